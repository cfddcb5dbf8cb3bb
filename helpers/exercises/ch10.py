"""Exercises of chapter 10, preference tuning (DPO)."""

from __future__ import annotations

import math

from . import (
    AnswerMissing,
    as_number,
    call_answer,
    near_value,
    number,
    refuse_course_solution,
    register,
)

# ---------------------------------------------------------------- 10.1
# (policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): summed log-probabilities
# of one pair, different from anything the chapter prints.
CASES = [
    (-12.0, -20.0, -14.0, -15.0, 0.1),
    (-8.5, -7.0, -8.0, -9.5, 0.5),
    (-30.0, -31.0, -30.0, -31.0, 0.2),
    (-5.0, -40.0, -6.0, -20.0, 1.0),
]


def _trl_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    """The sigmoid DPO loss of one pair, as trl's DPOTrainer computes it (see test_preference)."""
    from ..preference import dpo_loss

    return dpo_loss(
        [policy_chosen], [policy_rejected], [ref_chosen], [ref_rejected], beta
    ).loss.item()


def _value(answer, *case) -> float:
    return as_number(call_answer(answer, *case))


def _same_losses(answer, expected) -> bool:
    return all(
        math.isclose(_value(answer, *c), _trl_loss(*c), rel_tol=1e-4, abs_tol=1e-6) for c in CASES
    )


def _loss_hint(answer, expected):
    pc, pr, rc, rr, beta = CASES[0]
    got = _value(answer, *CASES[0])
    margin = beta * ((pc - rc) - (pr - rr))
    if math.isclose(got, -margin, rel_tol=1e-4):
        return "that is minus the margin: the loss is -log(sigmoid(margin)), not -margin"
    if math.isclose(got, math.log1p(math.exp(margin)), rel_tol=1e-4):
        return "the sign is flipped: a larger margin (chosen ahead) must give a smaller loss"
    no_ref = beta * (pc - pr)
    if math.isclose(got, math.log1p(math.exp(-no_ref)), rel_tol=1e-4):
        return "subtract the reference's log-probabilities: the reward is beta*(policy - reference)"
    if math.isclose(got, math.log1p(math.exp(-margin / beta)), rel_tol=1e-4):
        return "multiply the log-ratio difference by beta before the sigmoid"
    return None


register(
    "10.1",
    "Write answer_10_1(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): the DPO "
    "(sigmoid) loss of ONE pair, from the summed log-probabilities of its two answers under the "
    "policy and the reference. Return a float.",
    lambda: _trl_loss,
    _same_losses,
    hints=[_loss_hint],
    fallback_hint="rewards are beta*(policy - reference) per answer; "
    "loss = -log sigmoid(chosen - rejected)",
)

# ---------------------------------------------------------------- 10.2
MARGIN_CASE = {
    "beta": 0.2,
    "policy_chosen": -9.0,
    "ref_chosen": -11.0,
    "policy_rejected": -16.0,
    "ref_rejected": -13.0,
}


def _margin() -> float:
    c = MARGIN_CASE
    return c["beta"] * (
        (c["policy_chosen"] - c["ref_chosen"]) - (c["policy_rejected"] - c["ref_rejected"])
    )


register(
    "10.2",
    "With beta = 0.2, the policy gives the chosen answer log-probability -9 (the reference -11) "
    "and the rejected answer -16 (the reference -13). What reward margin does DPOTrainer log "
    "(rewards/margins) for this pair?",
    _margin,
    number(abs_tol=1e-6),
    hints=[
        near_value(
            _margin() / MARGIN_CASE["beta"], "multiply by beta: the rewards are beta * log-ratio"
        ),
        near_value(
            MARGIN_CASE["beta"] * (-9.0 - -16.0),
            "the rewards are measured against the reference: subtract its log-probabilities",
        ),
        near_value(-_margin(), "the margin is chosen reward minus rejected reward"),
    ],
    fallback_hint="reward = beta*(policy - reference) for each answer; margin = chosen - rejected",
)


# ---------------------------------------------------------------- 10.3
GATHER_SHAPES = ((2, 7, 11), (3, 5, 20), (1, 9, 6))
"""Exercise 10.3: (rows, positions, vocabulary) of the random batches the check scores."""


def answer_log_probability(logits, input_ids, completion_mask):
    """The reference for 10.3: each row's summed log-probability of its answer tokens.

    The logits at position t score token t + 1, so the logits lose their last position
    and the tokens and mask their first.
    """
    import torch

    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = logps.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logps * completion_mask[:, 1:].to(token_logps.dtype)).sum(dim=1)


def _gather_batches():
    import torch

    batches = []
    for seed, (rows, length, vocab) in enumerate(GATHER_SHAPES, start=101):
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(rows, length, vocab, generator=generator) * 3
        input_ids = torch.randint(0, vocab, (rows, length), generator=generator)
        mask = torch.zeros(rows, length, dtype=torch.long)
        for row in range(rows):  # a prompt, an answer, then padding
            start = 2 + row
            mask[row, start : length - row] = 1
        batches.append((logits, input_ids, mask))
    return batches


def _gathered(answer):
    import torch

    from ..preference import answer_logps, batch_logps

    refuse_course_solution(answer, answer_logps, batch_logps, registered=answer_log_probability)
    got = []
    for logits, input_ids, mask in _gather_batches():
        result = call_answer(answer, logits.clone(), input_ids.clone(), mask.clone())
        if not torch.is_tensor(result):
            raise AnswerMissing(
                f"return a tensor with one number per row, not {type(result).__name__}"
            )
        got.append((result.detach().float(), (logits, input_ids, mask)))
    return got


def _same_gather(answer, expected) -> bool:
    import torch

    for result, batch in _gathered(answer):
        want = answer_log_probability(*batch)
        if result.shape != want.shape or not torch.allclose(result, want, atol=1e-4):
            return False
    return True


def _gather_hint(answer, expected):
    import torch

    for result, (logits, input_ids, mask) in _gathered(answer):
        want = answer_log_probability(logits, input_ids, mask)
        if result.shape != want.shape:
            return f"return one sum per row: shape {tuple(want.shape)}, got {tuple(result.shape)}"
        if torch.allclose(result, want, atol=1e-4):
            continue
        logps = torch.log_softmax(logits, dim=-1).gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)
        if torch.allclose(result, (logps * mask).sum(1), atol=1e-4):
            return "not shifted: the logits at position t score the token at t + 1"
        all_tokens = (
            torch.log_softmax(logits[:, :-1], dim=-1)
            .gather(-1, input_ids[:, 1:].unsqueeze(-1))
            .squeeze(-1)
            .sum(1)
        )
        if torch.allclose(result, all_tokens, atol=1e-4):
            return "every token was summed: keep only the answer's (completion_mask == 1)"
        probs = torch.softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1))
        if torch.allclose(result, (probs.squeeze(-1) * mask[:, 1:]).sum(1), atol=1e-4):
            return "those are probabilities: take log_softmax, then gather"
        counts = mask[:, 1:].sum(1).clamp(min=1)
        if torch.allclose(result * counts, want, atol=1e-3):
            return "that is the mean per token: DPO sums the answer's log-probabilities"
        return None
    return None


register(
    "10.3",
    "Write answer_10_3(logits, input_ids, completion_mask): each row's summed "
    "log-probability of its answer tokens (completion_mask == 1), the number DPO compares.",
    lambda: answer_log_probability,
    _same_gather,
    hints=[_gather_hint],
    fallback_hint="log_softmax over the vocabulary, gather the next token's entry, mask, sum",
)
