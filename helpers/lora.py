"""LoRA from scratch, its parameter arithmetic, and the peft details chapter 03 relies on.

LoRA (low-rank adaptation) freezes a linear layer's weight ``W`` (``d_out x d_in``) and
learns a correction of rank ``r`` instead: ``W + (alpha / r) * B @ A`` with ``A``
(``r x d_in``) and ``B`` (``d_out x r``). ``LoRALinear`` writes that in a few lines;
``to_peft`` puts the same ``A``, ``B`` and scaling into peft's own ``lora.Linear`` so the
two can be compared. The counting functions predict how many parameters a ``LoraConfig``
will train, from a model's config or from its modules, before peft builds anything.
``prepare_for_kbit_training`` and ``kbit_facts`` show what peft does to a 4-bit model
before QLoRA training.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

LORA_TARGETS_ALL_LINEAR = "all-linear"
"""peft's shorthand for "every linear layer except the output layer"."""

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
PROJECTIONS = ATTENTION + MLP
"""The seven linear layers of a Llama block (SmolLM2 is a Llama)."""

TARGET_CHOICES: dict[str, str | list[str]] = {
    "q, v": ["q_proj", "v_proj"],
    "attention (q, k, v, o)": list(ATTENTION),
    "all linear": LORA_TARGETS_ALL_LINEAR,
}
"""Three usual `target_modules`: the LoRA paper's q and v, all of attention, every linear layer."""


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``y = W x + (alpha/r) B A x``.

    ``A`` starts random (like an ``nn.Linear`` weight) and ``B`` starts at zero, so at
    first the update ``B @ A`` is exactly zero and the layer computes what the original
    did. Training moves ``A`` and ``B``; the original weight never changes.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float | None = None) -> None:
        super().__init__()
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ValueError(f"r={r!r} must be a positive integer (the rank of the update).")
        if r > min(base.in_features, base.out_features):
            raise ValueError(
                f"r={r} exceeds the layer's smaller dimension "
                f"({min(base.in_features, base.out_features)}): that is not a low-rank update."
            )
        self.base = base
        for param in self.base.parameters():
            param.requires_grad_(False)
        self.r = r
        self.alpha = float(2 * r if alpha is None else alpha)
        self.scaling = self.alpha / r
        weight = base.weight
        self.lora_A = nn.Parameter(
            torch.empty(r, base.in_features, dtype=weight.dtype, device=weight.device)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, r, dtype=weight.dtype, device=weight.device)
        )
        # The same initialisation nn.Linear gives its own weight (uniform in +-1/sqrt(d_in)).
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two thin products, x -> r numbers -> d_out numbers; B @ A is never formed here.
        update = (x @ self.lora_A.T) @ self.lora_B.T
        return self.base(x) + self.scaling * update

    def delta_weight(self) -> torch.Tensor:
        """The update as a full matrix, ``(alpha / r) * B @ A`` (d_out x d_in, rank <= r)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def merged_weight(self) -> torch.Tensor:
        """``W + (alpha / r) * B @ A``: one plain matrix that computes the same as this layer."""
        return self.base.weight + self.delta_weight()

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def trainable_parameters(module: nn.Module) -> int:
    """How many parameters of `module` have ``requires_grad`` set."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def to_peft(layer: LoRALinear, adapter_name: str = "default") -> nn.Module:
    """peft's ``lora.Linear`` around the same base layer, holding copies of `layer`'s A and B.

    peft stores ``A`` as the weight of an ``nn.Linear(d_in, r)`` and ``B`` as that of an
    ``nn.Linear(r, d_out)``: the same shapes as ours, ``r x d_in`` and ``d_out x r``.
    """
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLoraLinear

    config = LoraConfig(r=layer.r, lora_alpha=layer.alpha, lora_dropout=0.0)
    peft_layer = PeftLoraLinear(
        layer.base, adapter_name, config=config, r=layer.r, lora_alpha=layer.alpha
    )
    with torch.no_grad():
        peft_layer.lora_A[adapter_name].weight.copy_(layer.lora_A)
        peft_layer.lora_B[adapter_name].weight.copy_(layer.lora_B)
    return peft_layer


# --- counting -----------------------------------------------------------------------------


def _get(config: Mapping | Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def projection_shapes(config: Mapping | Any) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each of the seven linear layers of one Llama block, from the config.

    q and o map between the hidden size and all attention heads; k and v produce only the
    (fewer) key/value heads (grouped-query attention); the MLP widens to the intermediate
    size and back.
    """
    hidden = _get(config, "hidden_size")
    heads = _get(config, "num_attention_heads")
    head_dim = _get(config, "head_dim") or hidden // heads
    kv = _get(config, "num_key_value_heads") or heads
    inter = _get(config, "intermediate_size")
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv * head_dim),
        "v_proj": (hidden, kv * head_dim),
        "o_proj": (heads * head_dim, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


def _selected(target_modules: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(target_modules, str):
        if target_modules.lower() != LORA_TARGETS_ALL_LINEAR:
            raise ValueError(
                f"target_modules={target_modules!r}: give a list of layer names "
                f"(e.g. ['q_proj', 'v_proj']) or {LORA_TARGETS_ALL_LINEAR!r}."
            )
        return PROJECTIONS
    names = tuple(target_modules)
    unknown = sorted(set(names) - set(PROJECTIONS))
    if unknown:
        raise ValueError(f"{unknown} are not linear layers of a Llama block: {list(PROJECTIONS)}")
    return names


def lora_parameters(
    config: Mapping | Any, r: int, target_modules: str | Iterable[str] = LORA_TARGETS_ALL_LINEAR
) -> int:
    """Parameters LoRA adds to a Llama model: r * (d_in + d_out), summed over adapted layers.

    Each adapted layer gets A (r x d_in) and B (d_out x r); every block has the same
    layers, so the sum over one block is multiplied by the number of blocks.
    """
    shapes = projection_shapes(config)
    per_block = sum(
        r * (d_in + d_out) for name in _selected(target_modules) for d_in, d_out in [shapes[name]]
    )
    return per_block * _get(config, "num_hidden_layers")


def adapted_linears(
    model: nn.Module, target_modules: str | Sequence[str] = LORA_TARGETS_ALL_LINEAR
) -> dict[str, tuple[int, int]]:
    """The linear layers a ``LoraConfig`` with these `target_modules` adapts: name -> (d_in, d_out).

    Read from the model's modules, with peft's rules: a name in the list matches a module
    whose name ends with it; "all-linear" takes every linear layer except the output layer
    (the LM head); any other string is a regular expression the whole module name must
    match. On a model that already carries LoRA layers, their own small ``lora_A`` and
    ``lora_B`` layers are skipped and each wrapped layer counts under its own name.
    This is the one place the course matches targets (``helpers.training`` checks the
    LoRA rank against the layers found here).
    """
    if isinstance(target_modules, str):
        if target_modules.lower() == LORA_TARGETS_ALL_LINEAR:

            def wanted(name: str) -> bool:
                return True

        else:
            pattern = re.compile(target_modules)

            def wanted(name: str) -> bool:
                return pattern.fullmatch(name) is not None

    else:
        targets = tuple(target_modules)

        def wanted(name: str) -> bool:
            return any(name == t or name.endswith(f".{t}") for t in targets)

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is output or ".lora_" in f".{name}":
            continue
        name = name.removesuffix(".base_layer")  # the layer a peft lora.Linear wraps
        if wanted(name):
            found[name] = (module.in_features, module.out_features)
    return found


def count_lora_layers(model: nn.Module) -> int:
    """How many LoRA layers (peft's or ours) the model contains."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, (BaseTunerLayer, LoRALinear)) for m in model.modules())


def count_lora_parameters(
    model: nn.Module, r: int, target_modules: str | Sequence[str] = LORA_TARGETS_ALL_LINEAR
) -> int:
    """The same count as ``lora_parameters``, from the model's modules instead of its config."""
    return sum(
        r * (d_in + d_out) for d_in, d_out in adapted_linears(model, target_modules).values()
    )


def plot_rank_vs_parameters(
    config: Mapping | Any,
    base_parameters: int,
    ranks: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
    choices: Mapping[str, str | list[str]] | None = None,
):
    """LoRA rank vs trainable parameters for each target choice (log-log), and % of the model.

    Returns the matplotlib figure; call ``plt.show()`` after it.
    """
    import matplotlib.pyplot as plt

    choices = TARGET_CHOICES if choices is None else choices
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, targets in choices.items():
        counts = [lora_parameters(config, r, targets) for r in ranks]
        ax.plot(ranks, counts, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(ranks), [str(r) for r in ranks])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("trainable parameters")
    ax.grid(True, which="major", alpha=0.3)
    percent = ax.secondary_yaxis(
        "right",
        functions=(lambda n: 100 * n / base_parameters, lambda p: p * base_parameters / 100),
    )
    percent.set_ylabel("% of the base model")
    ax.axhline(base_parameters, color="grey", linestyle=":", linewidth=1)
    ax.text(ranks[0], base_parameters * 0.7, "the whole base model", color="grey", fontsize=8)
    ax.set_title("LoRA parameters grow linearly with the rank")
    ax.legend(title="target_modules")
    fig.tight_layout()
    return fig


# --- QLoRA preparation --------------------------------------------------------------------


def kbit_facts(model: nn.Module) -> dict[str, Any]:
    """Facts about a (4-bit) model that ``prepare_for_kbit_training`` changes.

    Counts of parameter tensors by kind (4-bit, 16-bit, fp32), the number of trainable
    parameters, whether a hook makes the input embeddings' output require gradients, and
    whether activation (gradient) checkpointing is on.
    """
    kinds: Counter[str] = Counter()
    for param in model.parameters():
        if type(param).__name__ == "Params4bit":
            kinds["4-bit weight tensors"] += 1
        elif param.dtype in (torch.float16, torch.bfloat16):
            kinds["16-bit tensors"] += 1
        elif param.dtype == torch.float32:
            kinds["fp32 tensors"] += 1
        else:
            kinds[f"{param.dtype} tensors"] += 1
    embedding = model.get_input_embeddings()
    return {
        "4-bit weight tensors": kinds["4-bit weight tensors"],
        "16-bit tensors (bf16/fp16)": kinds["16-bit tensors"],
        "fp32 tensors": kinds["fp32 tensors"],
        "trainable parameters": trainable_parameters(model),
        "hook on the input embeddings": bool(embedding._forward_hooks),
        "activation checkpointing": bool(model.is_activation_checkpointing),
    }


def facts_table(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Two ``kbit_facts`` side by side, one line per fact."""
    width = max(len(k) for k in before) + 2
    lines = [f"{'':<{width}}{'before':>12}{'after':>12}"]
    for key in before:
        b, a = before[key], after[key]
        fmt = (lambda v: f"{v:,}") if isinstance(b, int) and not isinstance(b, bool) else str
        lines.append(f"{key:<{width}}{fmt(b):>12}{fmt(a):>12}")
    return "\n".join(lines)


def prepare_for_kbit_training(model: nn.Module) -> nn.Module:
    """peft's ``prepare_model_for_kbit_training``, asking for reentrant checkpointing explicitly.

    It freezes every weight, casts 16-bit parameters that are not quantized (embedding,
    norms) to fp32, turns on activation checkpointing, and registers a hook that makes
    the embedding's output require gradients. That hook is needed by *reentrant*
    checkpointing, which backpropagates through a checkpointed block only when the
    block's input requires gradients (with every weight frozen, nothing else would).
    We pass ``use_reentrant=True`` explicitly: peft passes no value, and torch then
    warns that the default will change.
    """
    from peft import prepare_model_for_kbit_training

    with warnings.catch_warnings():
        # peft 0.21 calls `gradient_checkpointing_enable`, which transformers 5.23 renamed
        # to `activation_checkpointing_enable`; the warning concerns library code only.
        warnings.filterwarnings(
            "ignore",
            message="`gradient_checkpointing_enable` is deprecated",
            category=FutureWarning,
        )
        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": True},
        )


# --- comparing outputs --------------------------------------------------------------------


@torch.no_grad()
def logits(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The model's output logits for a tokenized batch, without gradients or a KV cache."""
    return model(**inputs, use_cache=False).logits


def max_abs_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute elementwise difference between two tensors of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.float() - b.float()).abs().max().item()
