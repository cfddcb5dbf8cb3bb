"""helpers.grpo and the larger-number data: rewards, advantages equal to trl's, a GRPO smoke run.

The trainers hold the tiny random model in fp32 with a LoRA adapter, so a step takes
well under a second; what is checked is the plumbing (the numbers trl computes from
the completions), not learning.
"""

from __future__ import annotations

import math

import pytest
import torch

import helpers
from helpers import grpo
from helpers.data import larger_number

ANSWER = ["82"]


def _one(reward, text, **columns):
    return reward([text], **columns)[0]


# ------------------------------------------------------------------ rewards
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("82", 1.0),
        ("The answer is 82.", 1.0),  # extra text around the right first number
        ("47", 0.0),
        ("47 is smaller than 82", 0.0),  # the first number is the answer given
        ("", 0.0),  # empty output
        ("eighty-two", 0.0),  # the right answer in the wrong format (no digits)
        ("820", 0.0),  # a longer number is not the answer
    ],
)
def test_answer_reward(text, expected):
    assert _one(grpo.answer_reward, text, answer=ANSWER) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("82", 1.0), (" 82. ", 1.0), ("47", 1.0), ("The answer is 82.", 0.0), ("", 0.0)],
)
def test_format_reward_wants_one_number_and_nothing_else(text, expected):
    assert _one(grpo.format_reward, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("82", 1.0), ("47 or 82, both are numbers", 1.0), ("47", 0.0), ("", 0.0), ("820", 0.0)],
)
def test_mentions_answer_reward_is_fooled_by_listing_both(text, expected):
    assert _one(grpo.mentions_answer_reward, text, answer=ANSWER) == expected


def test_rewards_take_trl_conversational_completions_and_extra_kwargs():
    completions = [
        [{"role": "assistant", "content": "82"}],
        [{"role": "assistant", "content": "9"}],
    ]
    kwargs = {"answer": ["82", "82"], "trainer_state": None, "a": [47, 47]}
    assert grpo.answer_reward(completions, **kwargs) == [1.0, 0.0]
    assert grpo.format_reward(completions, **kwargs) == [1.0, 1.0]
    assert grpo.mentions_answer_reward(completions, **kwargs) == [1.0, 0.0]
    assert grpo.completion_text([]) == ""


def test_the_right_answer_always_beats_a_wrong_one():
    rows = larger_number.read_split("test")[:50]
    for row in rows:
        small = str(min(row["a"], row["b"]))
        right, wrong = grpo.answer_reward([row["answer"], small], answer=[row["answer"]] * 2)
        assert right > wrong


# ------------------------------------------------------------------ advantages
def test_group_advantages_by_hand():
    adv = grpo.group_advantages([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 4)
    # group 1: mean 0.25, sample std 0.5
    assert adv[:4].tolist() == pytest.approx(
        [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001]
    )
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # an all-equal group
    assert grpo.zero_std_fraction([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], 4) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_group_advantages_equal_trls_lines_on_random_groups(seed):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 3, (24,), generator=generator).float() / 2
    assert torch.allclose(grpo.group_advantages(rewards, 4), grpo.trl_advantages(rewards, 4))


def test_group_advantages_scalings_and_bad_groups():
    rewards = [1.0, 0.0, 0.5, 0.5]
    assert grpo.group_advantages(rewards, 2, scale_rewards="none").tolist() == [0.5, -0.5, 0, 0]
    batch = grpo.group_advantages(rewards, 2, scale_rewards="batch")
    assert batch[0].item() == pytest.approx(0.5 / (torch.tensor(rewards).std().item() + 1e-4))
    with pytest.raises(ValueError, match="groups"):
        grpo.group_advantages([1.0, 0.0, 1.0], 2)
    with pytest.raises(ValueError, match="scale_rewards"):
        grpo.group_advantages(rewards, 2, scale_rewards="mean")


# ------------------------------------------------------------------ data
def test_prompt_generator_is_deterministic_and_seeded():
    assert larger_number.build_splits() == larger_number.build_splits()
    assert larger_number.build_splits(seed=1) != larger_number.build_splits()
    for split in ("train", "test"):
        assert larger_number.read_split(split) == larger_number.build_splits()[split]


def test_splits_are_disjoint_and_balanced():
    train, test = larger_number.read_split("train"), larger_number.read_split("test")
    assert (len(train), len(test)) == (400, 200)
    pairs = {
        split: {frozenset((r["a"], r["b"])) for r in rows}
        for split, rows in (("train", train), ("test", test))
    }
    assert not pairs["train"] & pairs["test"]
    assert len(pairs["test"]) == len(test)  # no pair twice within a split
    for rows in (train, test):
        assert sum(r["a"] > r["b"] for r in rows) == len(rows) // 2
        assert all(r["answer"] == str(max(r["a"], r["b"])) and r["a"] != r["b"] for r in rows)


def test_load_dataset_gives_conversational_prompts():
    test = helpers.load_dataset("larger-number", "test")
    row = test[0]
    assert row["prompt"] == [{"role": "user", "content": row["question"]}]
    assert {"answer", "a", "b"} <= set(test.column_names)


# ---------------------------------------------------- trl's GRPOConfig and GRPOTrainer
def test_cpu_traps_are_what_the_chapter_says():
    from trl import GRPOConfig

    fields = GRPOConfig.__dataclass_fields__
    assert "max_prompt_length" not in fields  # removed in trl 1.x
    assert grpo.removed_fields() == {"max_prompt_length": False}
    config = GRPOConfig(
        output_dir="outputs/grpo_default", use_cpu=True, activation_checkpointing=False
    )
    assert config.bf16 is True  # turned on although fp16 is unset and the device is a CPU
    message = grpo.generation_batch_error(per_device_train_batch_size=6, num_generations=4)
    assert "must be divisible by num_generations" in message
    assert grpo.generation_batch_error(per_device_train_batch_size=8, num_generations=4) is None


def characters(completions, **kwargs):
    """A reward with a spread even on the tiny random model's noise: the length in characters."""
    return [float(len(grpo.completion_text(c))) for c in completions]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from trl import GRPOTrainer

    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    train = helpers.load_dataset("larger-number", "train").select(range(16))
    args = grpo.grpo_config(
        str(tmp_path_factory.mktemp("grpo")),
        max_steps=2,
        max_completion_length=8,
        beta=0.1,
        use_cpu=True,
        bf16=False,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=[grpo.answer_reward, characters],
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=helpers.lora_config(r=4),
    )


def test_hand_advantages_equal_what_the_trainer_uses(trainer):
    scored = grpo.score_one_batch(trainer)
    rows = grpo.rows_of(trainer, scored)
    assert len(scored.completions) == 8
    assert [r["prompt"][0]["content"] for r in rows] == scored.prompts
    answers = [r["answer"] for r in rows]
    rewards = [
        a + c
        for a, c in zip(
            grpo.answer_reward(scored.completions, answer=answers),
            characters(scored.completions),
            strict=True,
        )
    ]
    assert grpo.zero_std_fraction(rewards, 4) < 1  # a check that can fail
    assert scored.advantages.abs().sum() > 0
    assert torch.allclose(grpo.group_advantages(rewards, 4), scored.advantages, atol=1e-5)


def test_an_all_equal_group_gives_no_gradient(trainer):
    scored = grpo.score_one_batch(trainer)
    inputs = scored.rows(range(4))
    inputs["advantages"] = torch.zeros(4)
    inputs["ref_per_token_logps"] = None  # no KL term for this check
    trainer_beta, trainer.beta = trainer.beta, 0.0
    try:
        assert grpo.gradient_norm(trainer, inputs) == 0.0
        inputs["advantages"] = torch.tensor([1.0, -1.0, 1.0, -1.0])
        assert grpo.gradient_norm(trainer, inputs) > 0.0
    finally:
        trainer.beta = trainer_beta


def test_grpo_smoke_run_logs_finite_metrics(trainer):
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2
    for name in (
        "reward",
        "frac_reward_zero_std",
        "rewards/answer_reward/mean",
        "rewards/characters/mean",
        "completions/mean_length",
        "kl",
        "loss",
    ):
        assert all(math.isfinite(h[name]) for h in logged), name


def test_drift_is_zero_before_training_and_logps_are_negative():
    from peft import get_peft_model

    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    model = get_peft_model(model, helpers.lora_config(r=4))
    prompts = ["Which number is larger, 12 or 34?"] * 2
    completions = grpo.sample_groups(
        model, tokenizer, prompts[:1], num_generations=2, seed=0, max_new_tokens=4
    )
    assert completions == grpo.sample_groups(
        model, tokenizer, prompts[:1], num_generations=2, seed=0, max_new_tokens=4
    )
    logps = grpo.completion_logps(model, tokenizer, prompts, completions)
    assert (logps < 0).all()
    assert grpo.drift_from_reference(model, tokenizer, prompts, completions) == 0.0
