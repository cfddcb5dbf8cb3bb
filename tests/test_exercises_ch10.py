"""Answers to chapter 10's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
