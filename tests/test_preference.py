"""The DPO loss by hand (helpers/preference.py) against trl's DPOTrainer, and the reward function.

The trainers hold the tiny random model in fp32 (``bf16=False``), so the hand-written
loss and trl's agree to rounding on any CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

import helpers
from helpers import preference
from helpers.data.yoda_pairs import pair_rows


def _dpo_trainer(tmp_path, *, pretrained_adapter: bool, beta: float = 0.1):
    """A DPOTrainer on the tiny model with a LoRA adapter: trained-looking (random B) or fresh."""
    from datasets import Dataset
    from peft import get_peft_model
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    model, tokenizer = helpers.load_model("tiny-random-smollm2", device="cpu")
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=1,
        beta=beta,
        learning_rate=1e-3,
        activation_checkpointing=False,
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        seed=0,
    )
    data = Dataset.from_list(pair_rows("train")[:8])
    lora = helpers.lora_config(r=4, init_lora_weights=False)  # B != 0: the adapter changes outputs
    if pretrained_adapter:
        model = get_peft_model(model, lora)
        return DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    return DPOTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora
    )


def test_dpo_loss_formula():
    out = preference.dpo_loss([-10.0, -5.0], [-12.0, -4.0], [-11.0, -5.0], [-11.0, -5.0], beta=0.5)
    # rewards: chosen 0.5*(1, 0), rejected 0.5*(-1, 1); margins (1.0, -0.5)
    torch.testing.assert_close(out.margins, torch.tensor([1.0, -0.5]))
    expected = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(0.5)))) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.accuracy == 0.5
    # policy == reference: every reward is 0 and the loss is log 2
    same = preference.dpo_loss([-3.0], [-4.0], [-3.0], [-4.0])
    assert same.loss.item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_hand_written_loss_equals_trl(tmp_path, beta):
    trainer = _dpo_trainer(tmp_path, pretrained_adapter=False, beta=beta)
    batch = preference.first_batch(trainer)
    assert set(batch) >= {"input_ids", "attention_mask", "completion_mask"}
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model, batch)
    mine = preference.dpo_batch_loss(trainer.model, batch, beta=beta)
    assert (
        abs(trl_loss.item() - math.log(2)) > 1e-3
    )  # the adapter moved the policy off the reference
    torch.testing.assert_close(mine.loss, trl_loss.float(), rtol=1e-5, atol=1e-6)
    logged = trainer._metrics["eval"]
    assert mine.chosen_rewards.mean().item() == pytest.approx(
        logged["rewards/chosen"][-1], abs=1e-5
    )
    assert mine.margins.mean().item() == pytest.approx(logged["rewards/margins"][-1], abs=1e-5)


def test_reference_of_a_fresh_adapter_is_the_base(tmp_path):
    trainer = _dpo_trainer(tmp_path, pretrained_adapter=False)
    assert trainer.ref_model is None
    assert preference.reference_adapter(trainer.model) is None  # adapters switched off


def test_reference_of_a_trained_adapter_is_a_frozen_copy(tmp_path):
    trainer = _dpo_trainer(tmp_path, pretrained_adapter=True)
    model = trainer.model
    assert trainer.ref_model is None
    assert preference.reference_adapter(model) == "ref"
    params = dict(model.named_parameters())
    ref_names = [n for n in params if ".ref." in n]
    assert ref_names and not any(params[n].requires_grad for n in ref_names)
    for name in ref_names:
        torch.testing.assert_close(params[name], params[name.replace(".ref.", ".default.")])
    # the reference is the starting adapter, not the base: before training, loss = log 2
    batch = preference.first_batch(trainer)
    model.eval()
    assert preference.dpo_batch_loss(model, batch).loss.item() == pytest.approx(math.log(2))


def test_reference_adapter_needs_an_adapter(tiny):
    with pytest.raises(ValueError, match="ref_model"):
        preference.reference_adapter(tiny[0])


def test_variants_are_read_from_trl():
    losses = preference.dpo_loss_types()
    assert {"sigmoid", "ipo", "hinge", "robust", "sft"} <= set(losses)
    trainers = preference.preference_trainers()
    assert "DPOTrainer" in trainers["trl"]
    # a trainer importable from trl itself is not also listed as experimental-only
    stable_modules = {name.removesuffix("Trainer").lower() for name in trainers["trl"]}
    assert not stable_modules & {m.replace("_", "") for m in trainers["trl.experimental"]}


def test_yoda_reward_prefers_the_right_answer():
    pairs = pair_rows("test")
    assert preference.reward_prefers_chosen(preference.yoda_reward, pairs) == 1.0
    right = [{"role": "assistant", "content": "Go alone, you must not."}]
    assert preference.yoda_reward(
        [right, "Go alone, must you not."], yoda=[right[0]["content"]] * 2
    ) == [
        1.0,
        pytest.approx(0.5 * 3 / 5),  # "Go", "alone," and "not." in place
    ]


def test_a_wrong_sign_reward_is_caught():
    def flipped(completions, yoda, **kwargs):
        return [-r for r in preference.yoda_reward(completions, yoda)]

    assert preference.reward_prefers_chosen(flipped, pair_rows("test")) == 0.0


def test_pair_scores_count_the_pairs_that_prefer_the_chosen_answer():
    scores = preference.PairScores(
        policy_chosen=torch.tensor([-1.0, -5.0, -2.0, -3.0]),
        policy_rejected=torch.tensor([-2.0, -4.0, -9.0, -3.0]),  # a tie is not a preference
        ref_chosen=torch.zeros(4),
        ref_rejected=torch.zeros(4),
    )
    assert scores.prefers_chosen.tolist() == [True, False, True, False]
    assert scores.preference_accuracy == 0.5
    rate = scores.preference_rate
    assert (rate.hits, rate.n) == (2, 4)
    low, high = rate.interval
    assert low < 0.5 < high
