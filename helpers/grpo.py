"""GRPO with verifiable rewards: reward functions, group advantages, and trl's GRPOTrainer on a CPU.

GRPO (Shao et al., 2024, DeepSeekMath) samples ``num_generations`` completions for
each prompt, scores each with reward functions, and turns the scores into
*advantages* relative to the completion's own group:

    advantage_i = (reward_i - mean(group)) / (std(group) + 1e-4)

(trl 1.16 with ``scale_rewards="group"``; the std is the sample std, n - 1 in the
denominator). Completions better than their siblings are pushed up, worse ones
down. A group whose rewards are all equal has advantage 0 everywhere, so it adds
nothing to the policy-gradient loss: with a reward the model never (or always)
earns, GRPO learns nothing. trl logs the share of such groups as
``frac_reward_zero_std``.

Reward functions have trl's signature: ``f(completions, **columns) -> list[float]``.
``completions`` holds one entry per sampled completion (a string, or for
conversational prompts a list with one assistant message); every other column of
the data set comes as a keyword argument, one value per completion, plus trl's own
extras (``trainer_state``, ``log_extra``, ...), so a reward takes ``**kwargs``.

Every trl detail the course relies on for GRPO lives here, and ``tests/test_grpo.py``
checks it against the installed trl: the advantages equal the trainer's, the CPU
settings train, the logged metrics exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import hardware
from .modes import eval_mode

# trl is imported inside the functions that use it: it is a heavy dependency (seconds to
# import), and the reward functions and advantages here need only torch.

NUMBER = re.compile(r"-?\d+")
ONLY_A_NUMBER = re.compile(r"\s*-?\d+\s*\.?\s*")
EPSILON = 1e-4
"""What trl adds to the group std before dividing (so an all-equal group gives 0, not 0/0)."""


# ------------------------------------------------------------------ reward functions
def completion_text(completion) -> str:
    """A completion as trl passes it to reward functions: a string or a list of messages."""
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    return completion[-1]["content"]


def first_number(text: str) -> str | None:
    """The first whole number written in `text` ("-3", "47"), or None if there is none."""
    match = NUMBER.search(text)
    return match.group(0) if match else None


def answer_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the first number the completion writes is the right answer, else 0.0.

    The verifiable reward: "The answer is 82." and "82" both earn it; "47 is smaller
    than 82" does not (its answer is 47), nor does "eighty-two" (no digits) or an
    empty completion.
    """
    return [
        float(first_number(completion_text(c)) == str(a))
        for c, a in zip(completions, answer, strict=True)
    ]


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 when the completion is one number and nothing else (a final period allowed)."""
    return [float(ONLY_A_NUMBER.fullmatch(completion_text(c)) is not None) for c in completions]


def mentions_answer_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the right number appears anywhere in the completion: a reward that can be gamed.

    It looks reasonable (a right answer mentions the right number), but a completion
    that repeats *both* numbers of the question earns it without choosing.
    """
    return [
        float(str(a) in NUMBER.findall(completion_text(c)))
        for c, a in zip(completions, answer, strict=True)
    ]


# ------------------------------------------------------------------ group advantages
def group_advantages(
    rewards: Sequence[float] | torch.Tensor,
    num_generations: int,
    *,
    scale_rewards: str = "group",
) -> torch.Tensor:
    """Advantages of consecutive groups of `num_generations` rewards, as GRPOTrainer forms them.

    ``scale_rewards="group"`` divides by each group's std (+1e-4), ``"batch"`` by the
    std of all rewards, ``"none"`` only subtracts the group mean (Dr. GRPO).
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float32).flatten()
    if num_generations < 2 or rewards.numel() % num_generations:
        raise ValueError(
            f"{rewards.numel()} rewards do not split into groups of num_generations="
            f"{num_generations} (at least 2 per group)."
        )
    groups = rewards.view(-1, num_generations)
    centred = (groups - groups.mean(dim=1, keepdim=True)).flatten()
    if scale_rewards == "none":
        return centred
    if scale_rewards == "group":
        std = groups.std(dim=1, keepdim=True).expand_as(groups).flatten()
    elif scale_rewards == "batch":
        std = rewards.std().expand_as(rewards)
    else:
        raise ValueError(f"scale_rewards={scale_rewards!r}: use 'group', 'batch' or 'none'.")
    return centred / (std + EPSILON)


def zero_std_fraction(rewards: Sequence[float] | torch.Tensor, num_generations: int) -> float:
    """Share of groups whose rewards are all equal: trl's ``frac_reward_zero_std``."""
    groups = torch.as_tensor(rewards, dtype=torch.float32).view(-1, num_generations)
    return (groups.std(dim=1) == 0).float().mean().item()


def trl_advantages(rewards: Sequence[float] | torch.Tensor, num_generations: int) -> torch.Tensor:
    """Advantages computed with trl's own ``nanstd``, the lines GRPOTrainer runs (group scaling).

    A reference for checks that must not depend on ``group_advantages``;
    ``tests/test_grpo.py`` checks both against a real trainer's batch.
    """
    from trl.trainer.utils import nanstd

    rewards = torch.as_tensor(rewards, dtype=torch.float32).flatten()
    mean = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    std = nanstd(rewards.view(-1, num_generations), dim=1)
    mean = mean.repeat_interleave(num_generations)
    std = std.repeat_interleave(num_generations)
    return (rewards - mean) / (std + EPSILON)


# ------------------------------------------------------------------ trl's GRPOConfig on a CPU
def cpu_settings() -> dict:
    """The GRPOConfig fields that differ on a CPU, and why (the chapter prints them).

    - ``use_cpu``: there is no accelerator to use (on a GPU machine: False).
    - ``bf16``: GRPOConfig turns bf16 on whenever fp16 is unset; a CPU without bf16
      units emulates it, many times slower. fp32 unless the hardware has bf16.
    - ``activation_checkpointing`` (transformers 5.23's name for
      ``gradient_checkpointing``, which now warns): GRPOConfig turns it on; short
      completions of a 135M model fit without it, and recomputing costs a third more.
    """
    gpu = torch.cuda.is_available()
    return {
        "use_cpu": not gpu,
        "bf16": gpu and hardware.bf16_native("cuda"),
        "activation_checkpointing": False,
    }


def grpo_config(output_dir: str = "outputs/grpo", **overrides):
    """A ``GRPOConfig`` with the course's small-run defaults; any field can be overridden."""
    from trl import GRPOConfig

    settings = {
        "output_dir": output_dir,
        **cpu_settings(),
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 16,
        "temperature": 1.0,
        "learning_rate": 5e-4,
        "lr_scheduler_type": "constant",
        "loss_type": "grpo",
        "beta": 0.0,
        "max_steps": 10,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "seed": 0,
    }
    settings.update(overrides)
    return GRPOConfig(**settings)


def generation_batch_error(per_device_train_batch_size: int, num_generations: int) -> str | None:
    """trl's message when a batch cannot hold whole groups, or None when it can."""
    try:
        grpo_config(
            "outputs/grpo_check",
            per_device_train_batch_size=per_device_train_batch_size,
            num_generations=num_generations,
        )
    except ValueError as err:
        return str(err)
    return None


def removed_fields(names: Sequence[str] = ("max_prompt_length",)) -> dict[str, bool]:
    """Whether the installed ``GRPOConfig`` still has each field (False: removed)."""
    from trl import GRPOConfig

    return {name: name in GRPOConfig.__dataclass_fields__ for name in names}


# ------------------------------------------------------------------ one scored batch, by hand
@dataclass
class ScoredBatch:
    """One generation batch as GRPOTrainer scored it, and what the loss is computed from."""

    prompts: list[str]
    completions: list[str]
    advantages: torch.Tensor
    inputs: dict

    def rows(self, indices: Sequence[int]) -> dict:
        """The trainer's inputs restricted to some completions (e.g. one group)."""
        index = torch.as_tensor(list(indices))
        return {
            k: v[index] if isinstance(v, torch.Tensor) and v.dim() > 0 else v
            for k, v in self.inputs.items()
        }


def score_one_batch(trainer) -> ScoredBatch:
    """Generate and score one generation batch exactly as ``trainer.train()`` would.

    trl 1.16 has no public method for this step: it runs inside
    ``GRPOTrainer._generate_and_score_completions`` (the trainer's data loader yields
    the prompts, each repeated ``num_generations`` times). The completions are decoded
    the way trl decodes them for the reward functions.
    """
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = trainer._generate_and_score_completions(batch)
    tokenizer = trainer.processing_class
    completions = tokenizer.batch_decode(inputs["completion_ids"], skip_special_tokens=True)
    prompts = [completion_text(row["prompt"]) for row in batch]
    return ScoredBatch(prompts, completions, inputs["advantages"].detach().cpu(), inputs)


def rows_of(trainer, scored: ScoredBatch) -> list[dict]:
    """The data set rows behind a scored batch, in its order (for the reward columns)."""
    by_prompt = {completion_text(r["prompt"]): r for r in trainer.train_dataset}
    return [by_prompt[p] for p in scored.prompts]


def gradient_norm(trainer, inputs: dict) -> float:
    """Norm of the gradient of GRPOTrainer's loss on `inputs` w.r.t. the trainable weights.

    The loss is computed with the model in eval mode (trl then skips its
    gradient-accumulation scaling, which only exists inside ``train()``); the
    gradients are cleared again afterwards and the weights are not changed.
    """
    model = trainer.model
    model.zero_grad(set_to_none=True)
    with eval_mode(model):
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
    squares = [p.grad.pow(2).sum() for p in model.parameters() if p.grad is not None]
    norm = math.sqrt(sum(s.item() for s in squares)) if squares else 0.0
    model.zero_grad(set_to_none=True)
    return norm


# ------------------------------------------------------------------ sampling and drift
def chat_texts(tokenizer, prompts) -> list[str]:
    """Prompts (strings or message lists) rendered with the chat template, assistant turn open."""
    messages = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
    return [
        tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
        for m in messages
    ]


@torch.no_grad()
def sample_groups(
    model,
    tokenizer,
    prompts,
    *,
    num_generations: int,
    seed: int,
    temperature: float = 1.0,
    max_new_tokens: int = 16,
    batch_size: int = 64,
) -> list[str]:
    """`num_generations` sampled completions per prompt, grouped (p0, p0, ..., p1, ...).

    Sampled like GRPOTrainer samples (full distribution: top_k=0, top_p=1), from one
    seed: the same model and seed give the same completions on one machine.
    """
    texts = [t for t in chat_texts(tokenizer, prompts) for _ in range(num_generations)]
    torch.manual_seed(seed)
    out: list[str] = []
    with eval_mode(model, tokenizer, padding_side="left"):
        device = next(model.parameters()).device
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(device)
            ids = model.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = ids[:, enc["input_ids"].shape[1] :]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    return out


@torch.no_grad()
def completion_logps(model, tokenizer, prompts, completions, *, batch_size: int = 32):
    """Summed log-probability of each completion's tokens (EOS included) after its prompt."""
    texts = chat_texts(tokenizer, prompts)
    totals = []
    with eval_mode(model, tokenizer, padding_side="right"):
        device = next(model.parameters()).device
        for start in range(0, len(texts), batch_size):
            prompt_ids = [
                tokenizer(t, add_special_tokens=False)["input_ids"]
                for t in texts[start : start + batch_size]
            ]
            answer_ids = [
                tokenizer(c, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                for c in completions[start : start + batch_size]
            ]
            rows = [p + a for p, a in zip(prompt_ids, answer_ids, strict=True)]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), tokenizer.pad_token_id)
            mask = torch.zeros_like(ids)
            scored = torch.zeros_like(ids, dtype=torch.float32)
            for i, (p, row) in enumerate(zip(prompt_ids, rows, strict=True)):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
                scored[i, len(p) : len(row)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            token = logps.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            totals.append((token * scored[:, 1:].to(device)).sum(dim=1).cpu())
    return torch.cat(totals)


def drift_from_reference(model, tokenizer, prompts, completions) -> float:
    """Mean of log p_policy(y) - log p_ref(y) over the policy's own samples y (nats).

    With a LoRA adapter the reference is the same model with the adapter switched
    off, as GRPOTrainer uses it. On the policy's own samples this mean estimates the
    KL divergence KL(policy || reference) per completion: 0 when nothing has moved.
    """
    policy = completion_logps(model, tokenizer, prompts, completions)
    with model.disable_adapter():
        reference = completion_logps(model, tokenizer, prompts, completions)
    return (policy - reference).mean().item()
