"""Answers to chapter 10's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from helpers.exercises import ch10


def _torch_version(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(torch.tensor(margin)).item()


def _math_version(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta):
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    return math.log(1 + math.exp(-(chosen - rejected)))


def _minus_margin(pc, pr, rc, rr, beta):
    return -beta * ((pc - rc) - (pr - rr))


def _flipped(pc, pr, rc, rr, beta):
    return _math_version(pc, pr, rc, rr, -beta)


def _no_reference(pc, pr, rc, rr, beta):
    return math.log(1 + math.exp(-beta * (pc - pr)))


def _no_beta(pc, pr, rc, rr, beta):
    return math.log(1 + math.exp(-((pc - rc) - (pr - rr))))


RIGHT = {
    "10.1": [_torch_version, _math_version],
    "10.2": [1.0, 1, 0.9999999],
}

WRONG = {
    "10.1": [
        (_minus_margin, "minus the margin"),
        (_flipped, "sign is flipped"),
        (_no_reference, "subtract the reference"),
        (_no_beta, "multiply the log-ratio difference by beta"),
        (0.69, "asks for a function"),
    ],
    "10.2": [
        (5.0, "multiply by beta"),
        (1.4, "subtract its log-probabilities"),
        (-1.0, "chosen reward minus rejected"),
    ],
}


# --- 10.3: the log-probability gather ---------------------------------------------------------
def gather_by_hand(logits, input_ids, completion_mask):
    logps = F.log_softmax(logits[:, :-1], dim=-1)
    picked = torch.gather(logps, 2, input_ids[:, 1:, None])[..., 0]
    return (picked * completion_mask[:, 1:]).sum(-1)


def gather_unshifted(logits, input_ids, completion_mask):
    logps = F.log_softmax(logits, dim=-1)
    picked = torch.gather(logps, 2, input_ids[..., None])[..., 0]
    return (picked * completion_mask).sum(-1)


def gather_every_token(logits, input_ids, completion_mask):
    logps = F.log_softmax(logits[:, :-1], dim=-1)
    return torch.gather(logps, 2, input_ids[:, 1:, None])[..., 0].sum(-1)


def gather_probabilities(logits, input_ids, completion_mask):
    probs = F.softmax(logits[:, :-1], dim=-1)
    picked = torch.gather(probs, 2, input_ids[:, 1:, None])[..., 0]
    return (picked * completion_mask[:, 1:]).sum(-1)


def gather_mean(logits, input_ids, completion_mask):
    total = gather_by_hand(logits, input_ids, completion_mask)
    return total / completion_mask[:, 1:].sum(-1)


def gather_with_the_helper(logits, input_ids, completion_mask):
    from helpers.preference import answer_logps

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": logits})()

    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "completion_mask": completion_mask,
    }
    return answer_logps(Fixed(), batch)


RIGHT["10.3"] = [gather_by_hand, ch10.answer_log_probability]
WRONG["10.3"] = [
    (gather_unshifted, "not shifted"),
    (gather_every_token, "every token was summed"),
    (gather_probabilities, "those are probabilities"),
    (gather_mean, "the mean per token"),
    (gather_with_the_helper, "write it yourself"),
    (lambda logits, ids, mask: 1.5, "return a tensor"),
]


def test_the_gather_reference_equals_the_chapter_helper():
    from helpers.preference import answer_logps

    for logits, input_ids, mask in ch10._gather_batches():

        class Fixed(torch.nn.Module):
            def forward(self, input_ids, attention_mask, _logits=logits):
                return type("Out", (), {"logits": _logits})()

        batch = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "completion_mask": mask,
        }
        assert torch.allclose(
            answer_logps(Fixed(), batch), ch10.answer_log_probability(logits, input_ids, mask)
        )
