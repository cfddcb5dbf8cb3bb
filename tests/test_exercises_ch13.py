"""Answers to chapter 13's exercises that must be accepted (RIGHT) or rejected (WRONG).

tests/test_exercises.py collects RIGHT and WRONG from every tests/test_exercises_ch*.py.
"""

from __future__ import annotations

import re
import statistics

import torch


# ---------------------------------------------------------------- 13.1
def _regex_reward(completions, smaller, **kwargs):
    out = []
    for completion, want in zip(completions, smaller, strict=True):
        numbers = re.findall(r"\d+", completion[-1]["content"])
        out.append(1.0 if numbers and numbers[0] == want else 0.0)
    return out


def _split_reward(completions, smaller, **kwargs):
    rewards = []
    for completion, want in zip(completions, smaller, strict=True):
        text = completion[-1]["content"]
        words = re.sub(r"[^\d]", " ", text).split()
        rewards.append(float(bool(words) and int(words[0]) == int(want)))
    return rewards


def _flipped_reward(completions, smaller, **kwargs):
    return [1.0 - r for r in _regex_reward(completions, smaller)]


def _exact_text_reward(completions, smaller, **kwargs):
    return [float(c[-1]["content"].strip() == s) for c, s in zip(completions, smaller, strict=True)]


def _anywhere_reward(completions, smaller, **kwargs):
    return [
        float(s in re.findall(r"\d+", c[-1]["content"]))
        for c, s in zip(completions, smaller, strict=True)
    ]


def _substring_reward(completions, smaller, **kwargs):
    out = []
    for c, s in zip(completions, smaller, strict=True):
        match = re.search(r"\d+", c[-1]["content"])
        out.append(float(match is not None and match.group(0).startswith(s)))
    return out


def _calls_the_course(completions, smaller, **kwargs):
    from helpers import grpo

    return grpo.answer_reward(completions, answer=smaller)


def _one_reward_only(completions, smaller, **kwargs):
    return [1.0]


# ---------------------------------------------------------------- 13.2
def _torch_advantages(rewards, num_generations):
    groups = torch.tensor(rewards).view(-1, num_generations)
    return (
        (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)
    ).flatten()


def _plain_advantages(rewards, num_generations):
    out = []
    for start in range(0, len(rewards), num_generations):
        group = rewards[start : start + num_generations]
        mean, std = statistics.mean(group), statistics.stdev(group)
        out += [(r - mean) / (std + 1e-4) for r in group]
    return out


def _centred_only(rewards, num_generations):
    groups = torch.tensor(rewards).view(-1, num_generations)
    return (groups - groups.mean(1, keepdim=True)).flatten()


def _population_std(rewards, num_generations):
    groups = torch.tensor(rewards).view(-1, num_generations)
    std = groups.std(1, unbiased=False, keepdim=True)
    return ((groups - groups.mean(1, keepdim=True)) / (std + 1e-4)).flatten()


def _whole_batch(rewards, num_generations):
    r = torch.tensor(rewards)
    return (r - r.mean()) / (r.std() + 1e-4)


def _no_epsilon(rewards, num_generations):
    groups = torch.tensor(rewards).view(-1, num_generations)
    return ((groups - groups.mean(1, keepdim=True)) / groups.std(1, keepdim=True)).flatten()


def _calls_trl(rewards, num_generations):
    from helpers import grpo

    return grpo.trl_advantages(rewards, num_generations)


RIGHT = {
    "13.1": [_regex_reward, _split_reward],
    "13.2": [_torch_advantages, _plain_advantages],
}

WRONG = {
    "13.1": [
        (_flipped_reward, "sign is flipped"),
        (_exact_text_reward, "words around it"),
        (_anywhere_reward, "FIRST number"),
        (_substring_reward, "whole numbers"),
        (_calls_the_course, "course's or trl's own code"),
        (_one_reward_only, "one reward per completion"),
        (1.0, "asks for a function"),
    ],
    "13.2": [
        (_centred_only, "divide by the group's standard deviation"),
        (_population_std, "n - 1"),
        (_whole_batch, "within each group"),
        (_no_epsilon, "add 1e-4"),
        (_calls_trl, "course's or trl's own code"),
    ],
}
