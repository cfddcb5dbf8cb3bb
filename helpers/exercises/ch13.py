"""Exercises of chapter 13, GRPO with verifiable rewards.

Both ask for code, and both are checked on cases the chapter never shows. An answer
that hands the work to the course's own solution (``helpers.grpo``) or to trl is
refused: the check watches which functions the learner's code calls.
"""

from __future__ import annotations

import math
import re
import sys

import torch

from ..grpo import trl_advantages
from . import call_answer, register


# ---------------------------------------------------------------- not the course's own solution
class BadAnswer(Exception):
    """The answer cannot be compared (wrong shape, or it calls the solution); says why."""


def _calls_solution(module: str) -> bool:
    return module == "helpers.grpo" or module == "trl" or module.startswith("trl.")


def _run(function, *args, **kwargs):
    """Run the learner's function; raise BadAnswer when it calls helpers.grpo or trl code."""
    called: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and _calls_solution(frame.f_globals.get("__name__", "")):
            called.append(f"{frame.f_globals['__name__']}.{frame.f_code.co_name}")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = call_answer(function, *args, **kwargs)
    finally:
        sys.setprofile(previous)
    if called:
        raise BadAnswer(
            f"your function calls the course's or trl's own code ({called[0]}): "
            "write the computation yourself"
        )
    return result


def _bad_answer_hint(check):
    """A hint rule that names why `check(answer)` could not compare the answer."""

    def rule(answer, expected):
        try:
            check(answer)
        except BadAnswer as why:
            return str(why)
        return None

    return rule


# ---------------------------------------------------------------- 13.1
# A new task, never shown in the chapter: the completion must name the *smaller* number.
# (completion, smaller) -> expected reward; a right answer in any wording earns 1.
REWARD_CASES = [
    ("23", "23", 1.0),
    ("The smaller one is 23.", "23", 1.0),
    ("71", "23", 0.0),
    ("71 is bigger than 23", "23", 0.0),
    ("", "23", 0.0),
    ("twenty-three", "23", 0.0),
    ("230", "23", 0.0),
    ("Answer: 5", "5", 1.0),
    ("15", "5", 0.0),
]


def _rewards(answer, texts, smaller) -> list[float]:
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    result = _run(answer, completions, smaller=smaller, trainer_state=None)
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise BadAnswer("return a list with one reward (a float) per completion")
    values = [float(v) for v in result]
    if len(values) != len(texts):
        raise BadAnswer(f"return one reward per completion: {len(texts)} in, {len(values)} out")
    return values


def _smaller_reward(completions, smaller, **kwargs) -> list[float]:
    """The model answer: the first whole number of each completion against the answer."""
    rewards = []
    for completion, want in zip(completions, smaller, strict=True):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        match = re.search(r"-?\d+", text)
        rewards.append(float(match is not None and match.group(0) == want))
    return rewards


EXPECTED_REWARDS = [want for _, _, want in REWARD_CASES]


def _case_rewards(answer) -> list[float]:
    return _rewards(answer, [t for t, _, _ in REWARD_CASES], [s for _, s, _ in REWARD_CASES])


def _same_rewards(answer, expected) -> bool:
    try:
        return _case_rewards(answer) == EXPECTED_REWARDS
    except BadAnswer:
        return False  # the hint says why


def _reward_hint(answer, expected):
    try:
        got = _case_rewards(answer)
    except BadAnswer:
        return None
    if all(g == 1.0 - e for g, e in zip(got, EXPECTED_REWARDS, strict=True)):
        return "the sign is flipped: GRPO maximises the reward, so a right answer must score higher"
    if got[1] == 0.0 and got[0] == 1.0:
        return "a right answer with words around it ('The smaller one is 23.') should still earn 1"
    if got[3] == 1.0:
        return "read the FIRST number the completion writes: '71 is bigger than 23' answers 71"
    if got[6] == 1.0 or got[8] == 1.0:
        return "compare whole numbers, not substrings: '230' is not 23"
    return None


register(
    "13.1",
    "Write answer_13_1(completions, smaller, **kwargs): a reward function with trl's signature "
    "for the question 'which number is smaller?'. Return 1.0 for each completion whose first "
    "number is the right answer (the `smaller` column, a string), else 0.0.",
    lambda: _smaller_reward,
    _same_rewards,
    hints=[_bad_answer_hint(_case_rewards), _reward_hint],
    fallback_hint="take each completion's text (completion[-1]['content']), find its first "
    "whole number, and compare it with the answer",
)

# ---------------------------------------------------------------- 13.2
# Random reward groups (seeded), with all-equal groups mixed in, none shown in the chapter.
GROUP_CASES = [(4, 0), (2, 1), (8, 2), (4, 3), (3, 4)]


def _group_rewards(num_generations: int, seed: int) -> list[float]:
    generator = torch.Generator().manual_seed(1300 + seed)
    groups = torch.randint(0, 4, (3, num_generations), generator=generator).float() / 3
    groups[seed % 3] = groups[seed % 3, 0]  # one group whose rewards are all equal
    return groups.flatten().tolist()


def _trl_advantages(rewards, num_generations) -> list[float]:
    """The advantages as GRPOTrainer computes them (trl's own nanstd, group scaling)."""
    return trl_advantages(rewards, num_generations).tolist()


def _group_normalised(rewards, num_generations) -> list[float]:
    """The model answer, in plain torch: per group, (r - mean) / (sample std + 1e-4)."""
    groups = torch.tensor(rewards, dtype=torch.float32).view(-1, num_generations)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    return ((groups - mean) / (std + 1e-4)).flatten().tolist()


def _answer_advantages(answer, rewards, num_generations) -> list[float]:
    result = _run(answer, list(rewards), num_generations)
    if isinstance(result, torch.Tensor):
        result = result.flatten().tolist()
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise BadAnswer("return the advantages: a list or tensor with one value per reward")
    values = [float(v) for v in result]
    if len(values) != len(rewards):
        raise BadAnswer(f"return one advantage per reward: {len(rewards)} in, {len(values)} out")
    return values


def _all_cases(answer) -> list[tuple[list[float], list[float]]]:
    return [
        (
            _answer_advantages(answer, _group_rewards(n, seed), n),
            _trl_advantages(_group_rewards(n, seed), n),
        )
        for n, seed in GROUP_CASES
    ]


def _same_advantages(answer, expected) -> bool:
    try:
        cases = _all_cases(answer)
    except BadAnswer:
        return False  # the hint says why
    return all(
        len(got) == len(want)
        and all(
            math.isclose(g, w, rel_tol=1e-4, abs_tol=1e-4) for g, w in zip(got, want, strict=True)
        )
        for got, want in cases
    )


def _advantage_hint(answer, expected):
    rewards = _group_rewards(4, 0)
    try:
        got = torch.tensor(_answer_advantages(answer, rewards, 4))
    except BadAnswer:
        return None
    r = torch.tensor(rewards)
    groups = r.view(-1, 4)
    centred = (groups - groups.mean(dim=1, keepdim=True)).flatten()
    if torch.allclose(got, centred, atol=1e-4):
        return "divide by the group's standard deviation (+1e-4), not only subtract the mean"
    biased = groups.std(dim=1, unbiased=False, keepdim=True).expand_as(groups).flatten()
    if torch.allclose(got, centred / (biased + 1e-4), atol=1e-4):
        return "trl uses the sample standard deviation (divide by n - 1), torch.std's default"
    batch = (r - r.mean()) / (r.std() + 1e-4)
    if torch.allclose(got, batch, atol=1e-4):
        return "normalise within each group of num_generations rewards, not over the whole batch"
    if not torch.isfinite(got).all():
        return "an all-equal group has std 0: add 1e-4 to the std before dividing"
    return None


register(
    "13.2",
    "Write answer_13_2(rewards, num_generations): the group-normalised advantages GRPOTrainer "
    "forms from a flat list of rewards (consecutive groups of num_generations completions of "
    "one prompt). Return a list or tensor, one advantage per reward.",
    lambda: _group_normalised,
    _same_advantages,
    hints=[_bad_answer_hint(_all_cases), _advantage_hint],
    fallback_hint="per group: (reward - group mean) / (group std + 1e-4)",
)
