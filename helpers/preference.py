"""Preference tuning: the DPO loss written out, the reference model, and a reward function.

DPO (Rafailov et al., 2023) trains on pairs (prompt, chosen, rejected). For each
answer it needs the summed log-probability of the answer's tokens under the model
being trained (the *policy*) and under a frozen *reference*:

    reward(answer) = beta * (log p_policy(answer) - log p_ref(answer))
    loss           = -log sigmoid(reward(chosen) - reward(rejected))

The functions here compute exactly that from a batch as trl's ``DPOTrainer``
collates it (chosen rows first, then rejected rows, a ``completion_mask`` marking
the answer tokens); ``tests/test_preference.py`` checks the result equals
``DPOTrainer.compute_loss`` on the same batch.

The reference for free: trl switches the LoRA adapter instead of holding a second
model. With a fresh adapter (``peft_config=...``) the reference is the base with
adapters disabled; with a trained adapter loaded trainable (a ``PeftModel`` and no
``ref_model``) trl copies it into a frozen adapter named ``"ref"``, so the
reference is the SFT model the training starts from. ``reference_adapter`` says
which one a trainer uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .evaluation import normalize
from .metrics import Rate


@dataclass
class DPOOutput:
    """The DPO loss of a batch and the implicit rewards it is made of (one value per pair)."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards

    @property
    def accuracy(self) -> float:
        """Share of pairs whose chosen answer gets the higher reward."""
        return (self.margins > 0).float().mean().item()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """The sigmoid DPO loss (mean over pairs) from summed answer log-probabilities."""
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = (
        torch.as_tensor(t, dtype=torch.float32)
        for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    )
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return DPOOutput(loss, chosen_rewards.detach(), rejected_rewards.detach())


def answer_logps(model, batch: dict) -> torch.Tensor:
    """Summed log-probability of each row's answer tokens (``completion_mask`` == 1).

    The logits at position t predict token t+1, so both are shifted by one.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = batch["input_ids"][:, 1:]
    token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = batch["completion_mask"][:, 1:].to(token_logps.dtype)
    return (token_logps * mask).sum(dim=1)


def reference_adapter(model) -> str | None:
    """The adapter trl's DPOTrainer uses as the reference: ``"ref"``, or None (adapters off)."""
    config = getattr(model, "peft_config", None)
    if config is None:
        raise ValueError(
            "The model has no LoRA adapter, so there is no adapter to switch: "
            "pass ref_model=... to DPOTrainer, or train with a peft_config."
        )
    return "ref" if "ref" in config else None


def batch_logps(model, batch: dict, *, reference: bool = False) -> tuple[torch.Tensor, ...]:
    """(chosen, rejected) summed answer log-probabilities of a collated DPO batch.

    With ``reference=True`` the model's reference adapter is switched on for the
    forward pass (see ``reference_adapter``), as ``DPOTrainer`` does.
    """
    import contextlib

    from trl.trainer.utils import use_adapter

    context = (
        use_adapter(model, reference_adapter(model)) if reference else contextlib.nullcontext()
    )
    with torch.no_grad(), context:
        logps = answer_logps(model, batch)
    return logps.chunk(2, dim=0)


def dpo_batch_loss(model, batch: dict, beta: float = 0.1) -> DPOOutput:
    """The DPO loss of a collated batch by hand: policy and reference log-probs, ``dpo_loss``."""
    policy_chosen, policy_rejected = batch_logps(model, batch)
    ref_chosen, ref_rejected = batch_logps(model, batch, reference=True)
    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)


def first_batch(trainer) -> dict:
    """One batch from a trainer's training data loader, in the trainer's own collation."""
    batch = next(iter(trainer.get_train_dataloader()))
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


@dataclass
class PairScores:
    """Summed answer log-probabilities of held-out pairs under the policy and the reference."""

    policy_chosen: torch.Tensor
    policy_rejected: torch.Tensor
    ref_chosen: torch.Tensor
    ref_rejected: torch.Tensor

    @property
    def preference_accuracy(self) -> float:
        """Share of pairs where the policy gives the chosen answer the higher probability."""
        return (self.policy_chosen > self.policy_rejected).float().mean().item()

    @property
    def prefers_chosen(self) -> torch.Tensor:
        """Per pair: does the policy give the chosen answer the higher probability?"""
        return self.policy_chosen > self.policy_rejected

    @property
    def preference_rate(self) -> Rate:
        """The preference accuracy as a count with its Wilson 95% interval (few pairs: wide)."""
        return Rate(int(self.prefers_chosen.sum()), len(self.prefers_chosen))

    def rewards(self, beta: float) -> DPOOutput:
        """The implicit rewards, margins and DPO loss of these pairs."""
        return dpo_loss(
            self.policy_chosen, self.policy_rejected, self.ref_chosen, self.ref_rejected, beta
        )

    @property
    def logp_gap(self) -> float:
        """Mean of log p(chosen) - log p(rejected) under the policy (nats per pair)."""
        return (self.policy_chosen - self.policy_rejected).mean().item()


def score_pairs(trainer, dataset=None) -> PairScores:
    """Policy and reference log-probabilities of every pair of the trainer's eval data set.

    The pairs are tokenized and collated by the trainer itself (pass held-out pairs as
    ``DPOTrainer(eval_dataset=...)``), so the numbers are the ones DPO trains on. The
    model is put in eval mode for the passes and its mode restored afterwards.
    """
    model = trainer.model
    was_training = model.training
    model.eval()
    parts: list[list[torch.Tensor]] = [[], [], [], []]
    try:
        for batch in trainer.get_eval_dataloader(dataset):
            batch = {k: v.to(model.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            values = (*batch_logps(model, batch), *batch_logps(model, batch, reference=True))
            for part, value in zip(parts, values, strict=True):
                part.append(value.float().cpu())
    finally:
        model.train(was_training)
    return PairScores(*(torch.cat(p) for p in parts))


def dpo_loss_types() -> list[str]:
    """The ``loss_type`` values the installed trl's ``DPOConfig`` accepts (read from its help)."""
    from trl import DPOConfig

    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    return re.findall(r"`'([a-z_]+)'`", help_text)


def preference_trainers() -> dict[str, list[str]]:
    """Preference-tuning trainers of the installed trl, by where they can be imported from.

    ``"trl"``: the trainers exported by ``trl`` itself. ``"trl.experimental"``: the ones found
    *only* under ``trl.experimental`` (a trainer that trl also exports at the top level, as
    trl 1.16 does with KTO, is listed once, under ``"trl"``).
    """
    import importlib
    import pkgutil

    import trl

    wanted = ("DPO", "KTO", "ORPO", "CPO", "GRPO", "RLOO", "OnlineDPO", "Reward")
    stable = sorted(n for n in trl.__all__ if n.endswith("Trainer") and n.startswith(wanted))
    trainer_of_module = {
        "orpo": "ORPOTrainer",
        "cpo": "CPOTrainer",
        "kto": "KTOTrainer",
        "online_dpo": "OnlineDPOTrainer",
    }
    experimental = []
    try:
        exp = importlib.import_module("trl.experimental")
        names = {m.name for m in pkgutil.iter_modules(exp.__path__)}
        experimental = sorted(
            n for n in names if n in trainer_of_module and trainer_of_module[n] not in stable
        )
    except ImportError:
        pass
    return {"trl": stable, "trl.experimental": experimental}


# ------------------------------------------------------------------ a reward function
def _text(completion) -> str:
    """A completion as trl passes it to reward functions: a string or a list of messages."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"]


def yoda_reward(completions, yoda, **kwargs) -> list[float]:
    """Reward for GRPO/RLOO: 1.0 for the exact Yoda sentence, else the share of its words in order.

    Higher is better: GRPO/RLOO *maximise* it. ``yoda`` is the data set's column of
    reference sentences (trl passes every data set column as a keyword argument).
    """
    rewards = []
    for completion, reference in zip(completions, yoda, strict=True):
        got, want = normalize(_text(completion)), normalize(reference)
        if got == want:
            rewards.append(1.0)
            continue
        got_words, want_words = got.split(), want.split()
        same = sum(a == b for a, b in zip(got_words, want_words, strict=False))
        rewards.append(0.5 * same / max(len(want_words), len(got_words), 1))
    return rewards


def reward_prefers_chosen(reward_fn, pairs) -> float:
    """Share of preference pairs whose chosen answer `reward_fn` scores above the rejected one.

    A sanity check worth running before any RL training: a reward with the wrong sign
    (one that GRPO would maximise into the wrong answers) scores near 0 here, not near 1.
    """
    chosen = reward_fn(
        [p["chosen"] for p in pairs], yoda=[p["chosen"][-1]["content"] for p in pairs]
    )
    rejected = reward_fn(
        [p["rejected"] for p in pairs], yoda=[p["chosen"][-1]["content"] for p in pairs]
    )
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    return wins / len(pairs) if pairs else 0.0
