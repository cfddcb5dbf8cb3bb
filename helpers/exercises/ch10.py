"""Exercises of chapter 10, preference tuning (DPO)."""

from __future__ import annotations

import math

from . import as_number, call_answer, near_value, number, register

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
