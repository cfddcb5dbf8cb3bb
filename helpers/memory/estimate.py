"""Predict the peak memory of one training step of a Llama-style model, before running it.

``estimate_training_memory(model_or_config, batch_size=..., seq_len=..., ...)`` returns
a :class:`MemoryEstimate`: weights, gradients, optimizer states and activations, in
bytes, at the moment the step's memory peaks, and their sum, the predicted peak.
It predicts what ``helpers.memory.measure_training_step`` measures: the largest
number of live tensor bytes during a steady-state step (forward with labels,
backward, optimizer step), the model's weights and buffers and the batch included;
not the Python process around it.

Where the terms come from
-------------------------
**Weights, gradients, optimizer states** are counts: parameters × bytes per
parameter. A gradient has the dtype of its parameter; AdamW keeps two running
averages per trainable parameter, in the parameter's dtype; SGD without momentum
keeps none. LoRA adapters live in fp32 (peft's default) whatever the base dtype. A
4-bit (NF4) weight takes half a byte plus its quantization constants (one byte per
block of 64 with double quantization, and a few small tables).

**Activations: the paper.** Korthikanti et al., "Reducing Activation Recomputation in
Large Transformer Models" (2022), count the bytes a GPT-style layer keeps for the
backward pass, with 16-bit activations and dropout, as

    s·b·h·(34 + 5·a·s/h)   bytes per layer

(sequence length s, batch b, hidden size h, a heads): 11·sbh + 5·a·s²·b for
attention (its input, Q and K, V, the s×s scores after softmax, dropout masks and
outputs, the projection input), 19·sbh for the MLP (its input, the 4h-wide GeLU
input and output, a dropout mask) and 4·sbh for the two LayerNorm inputs. We keep
their method (list every tensor autograd saves, multiply by its size) and the
``a·s²`` structure of the attention term, and redo the list for what PyTorch runs
for SmolLM2 (Llama architecture), because almost every line differs:

- **no dropout** in SmolLM2: no masks, no dropout outputs;
- **RMSNorm** computes in fp32 and saves its fp32 input (4·h bytes per token even
  for 16-bit activations), its normalised output before the weight (only when the
  norm weight trains) and its output (kept by the next linear layers);
- **SwiGLU MLP** with intermediate size I (1536 = 2.67·h here, not 4·h): the gate
  and up projections, SiLU(gate) and the product are kept, 4·I values per token;
- **grouped-query attention**: keys and values have ``kv_heads·head_dim`` (192 here)
  values per token, not h; **rotary** embeddings keep the rotated q and k but
  nothing large for their own backward;
- **SDPA** (``scaled_dot_product_attention``, the default) keeps q, k, v, the output
  and a log-sum-exp per head and token, never the s×s matrix. **Eager** attention
  materialises it: the fp32 softmax output a·s² per sequence (the paper's ``a·s²``
  term), plus copies of k and v repeated to all heads and a contiguous output;
- **dtypes**: the paper assumes 16-bit activations. Here they have the dtype the
  step computes in (fp32 on a CPU by default, bf16 under autocast), the residual
  stream is kept in fp32 by RMSNorm, and under autocast every linear layer keeps its
  own bf16 copy of an fp32 input, plus a bf16 copy of each weight it multiplies;
- **LoRA**: a frozen linear layer keeps nothing for its weight; its adapter keeps
  the layer's input (shared, or a copy when peft or autocast casts it) and the
  r-dimensional output of A;
- **the logits**: the paper leaves out the output layer. For a 49,152-token
  vocabulary it is the largest single item: transformers' loss turns the logits
  into fp32 and ``log_softmax`` keeps an fp32 (tokens × vocabulary) tensor; at the
  start of the backward pass three of them are alive at once (the saved
  log-probabilities, the gradient of the loss and the gradient of the logits);
- **gradient checkpointing** (non-reentrant, per decoder layer) keeps only each
  layer's input, then recomputes one layer at a time during the backward pass.

**When is the peak?** Activations are largest when the backward pass starts;
gradients are complete, and activations gone, at its end and during the optimizer
step. The estimate evaluates the moments where a peak can occur (start of backward,
output-layer backward, recomputation of a checkpointed layer, end of backward,
optimizer step) and reports the largest, with its parts. With gradient
accumulation, gradients from earlier micro-batches are alive during the forward
pass too.

**What the operating system sees** is more than the live tensors: the process's peak
RSS adds the Python runtime and its libraries, and the memory that glibc's malloc keeps
after the step frees its tensors (it raises its mmap threshold after the first large
frees, so later tensors of up to 32 MiB come from heaps that keep freed memory for
reuse). ``estimate.process_memory()`` predicts it (:func:`predict_process_memory`), on
the CPU from a model measured in fresh processes, on CUDA from the allocator's documented
behaviour; the calculator, the OOM advice and the doctor judge "fits" by it.

Not modelled: trl's ``SFTTrainer`` computes the loss with a chunked output layer
(trl ≥ 1.0) that never holds the full logits, and ``helpers.build_trainer`` runs the
output layer on the answer positions only, so their logits terms are smaller; padded
batches under SDPA repeat keys and values to every head (``padded=True``).
Measured against ``measure_training_step`` on SmolLM2-135M (fp32, bf16 autocast,
4-bit + LoRA, SDPA and eager, with and without checkpointing), the estimate is
within a few percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZER_STATES = {"adamw": 2, "sgd": 0}  # state tensors per trainable parameter
ATTENTIONS = ("sdpa", "eager")
PARTS = ("weights", "gradients", "optimizer_states", "activations")
PHASES = ("forward/backward", "optimizer step")


def __getattr__(name: str):
    """``LINEAR_NAMES`` and ``QUANTIZATIONS``, from where they are defined, on first use.

    They live in ``helpers.lora`` and ``helpers.models``, which import torch; reading
    them lazily keeps ``import helpers.memory`` (and the estimator's import) instant.
    """
    if name == "LINEAR_NAMES":
        from ..lora import PROJECTIONS

        return PROJECTIONS
    if name == "QUANTIZATIONS":
        from ..models import QUANTIZATIONS

        return QUANTIZATIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dtype_name(dtype: Any) -> str:
    text = str(dtype).lower().removeprefix("torch.")
    aliases = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16"}
    name = aliases.get(text, text)
    if name not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(DTYPE_BYTES)}.")
    return name


@dataclass(frozen=True)
class Shape:
    """The numbers of a Llama-style decoder that decide its memory."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool

    @classmethod
    def of(cls, model_or_config: Any) -> Shape:
        """From a model, a transformers config, a dict, or a course model name."""
        obj = model_or_config
        if isinstance(obj, str):
            from .. import numbers

            if obj != "smollm2-135m-instruct":
                raise ValueError(f"no built-in shape for {obj!r}; pass its config instead.")
            obj = numbers.SMOLLM2_135M_CONFIG
        obj = getattr(obj, "config", obj)

        def get(key, default=None):
            if isinstance(obj, Mapping):
                return obj.get(key, default)
            return getattr(obj, key, default)

        heads = get("num_attention_heads")
        return cls(
            vocab_size=get("vocab_size"),
            hidden_size=get("hidden_size"),
            intermediate_size=get("intermediate_size"),
            num_hidden_layers=get("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=get("num_key_value_heads") or heads,
            head_dim=get("head_dim") or get("hidden_size") // heads,
            tie_word_embeddings=bool(get("tie_word_embeddings", False)),
        )

    def linears(self) -> dict[str, tuple[int, int]]:
        """(inputs, outputs) of each linear layer of one decoder layer (chapter 03's formula)."""
        from ..lora import projection_shapes

        return projection_shapes(self)

    @property
    def layer_linear_parameters(self) -> int:
        return sum(a * b for a, b in self.linears().values())

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def norm_parameters(self) -> int:
        return (2 * self.num_hidden_layers + 1) * self.hidden_size

    @property
    def parameters(self) -> int:
        head = 0 if self.tie_word_embeddings else self.embedding_parameters
        return (
            self.embedding_parameters
            + self.num_hidden_layers * self.layer_linear_parameters
            + self.norm_parameters
            + head
        )

    def lora_parameters(self, rank: int, targets: tuple[str, ...]) -> int:
        """r·(inputs + outputs) for each adapted linear layer, over all layers (chapter 03)."""
        from ..lora import lora_parameters

        return lora_parameters(self, rank, targets)


def quantized_bytes(num_params: int, quantization: str, out_features: int = 0) -> int:
    """Bytes of one weight matrix quantized by bitsandbytes, constants included.

    4-bit (NF4, blocks of 64, double quantization): half a byte per weight, one byte of
    absmax per block, an fp32 scale per 256 blocks, a 256-entry fp32 code table and the
    16-entry NF4 table. 8-bit (LLM.int8): one byte per weight and an fp32 scale per row.
    """
    if quantization == "4bit":
        blocks = math.ceil(num_params / 64)
        return math.ceil(num_params / 2) + blocks + 4 * math.ceil(blocks / 256) + 4 * 256 + 4 * 16
    if quantization == "8bit":
        return num_params + 4 * out_features
    raise ValueError(f"quantization={quantization!r} is not '8bit' or '4bit'.")


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted memory of one training step, in bytes, at its peak moment.

    ``weights + gradients + optimizer_states + activations == total``, the predicted
    peak. ``phases`` has the same four parts for the two moments that compete for the
    peak ("forward/backward" and "optimizer step"); ``peak_phase`` says which wins.
    ``details`` itemises the activations of the forward/backward phase.
    """

    weights: int
    gradients: int
    optimizer_states: int
    activations: int
    total: int
    peak_phase: str
    phases: dict[str, dict[str, int]]
    details: dict[str, int]
    trainable_parameters: int
    settings: dict[str, Any] = field(default_factory=dict)

    def fits(self, gigabytes: float, device: str = "cpu", quantity: str = "process") -> bool:
        """Whether the run fits in `gigabytes` GB (10**9 bytes).

        quantity="process" (default) compares what the operating system or the GPU driver
        sees (:meth:`process_memory`: RSS on the CPU, reserved memory plus the CUDA
        context on CUDA), upper end of its uncertainty excluded; "live" compares the
        live tensor peak (``total``) alone, which is never the whole story.
        """
        if quantity == "live":
            return self.total <= gigabytes * 1e9
        if quantity != "process":
            raise ValueError(f"quantity={quantity!r} is not 'process' or 'live'.")
        return self.process_memory(device).fits(gigabytes)

    def process_memory(self, device: str = "cpu", runtime_bytes: int | None = None):
        """The predicted peak memory of the whole process (:func:`predict_process_memory`)."""
        return predict_process_memory(self, device=device, runtime_bytes=runtime_bytes)

    def table(self) -> str:
        """The breakdown as a text table (MB = 10**6 bytes)."""
        rows = [f"{'':<18}{'forward/backward':>18}{'optimizer step':>16}"]
        for part in PARTS:
            label = part.replace("_", " ")
            a, b = (self.phases[p][part] / 1e6 for p in PHASES)
            rows.append(f"{label:<18}{a:>15,.1f} MB{b:>13,.1f} MB")
        a, b = (sum(self.phases[p].values()) / 1e6 for p in PHASES)
        rows.append(f"{'total':<18}{a:>15,.1f} MB{b:>13,.1f} MB")
        rows.append(f"predicted peak: {self.total / 1e6:,.1f} MB, during the {self.peak_phase}")
        return "\n".join(rows)

    def describe(self) -> str:
        """One line: the settings this estimate is for."""
        s = self.settings
        method = "full fine-tuning" if s["lora_rank"] is None else f"LoRA r={s['lora_rank']}"
        parts = [
            f"batch {s['batch_size']} x {s['seq_len']} tokens",
            s["dtype"] if s["quantization"] is None else f"{s['quantization']} + {s['dtype']}",
            method,
            s["optimizer"],
            s["attn_implementation"],
        ]
        if s["mixed_precision"]:
            parts.append(f"{s['mixed_precision']} autocast")
        if s["gradient_checkpointing"]:
            parts.append("gradient checkpointing")
        if s["gradient_accumulation_steps"] > 1:
            parts.append(f"{s['gradient_accumulation_steps']} accumulation steps")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.describe()}\n{self.table()}"

    def plot(self, ax=None, title: str | None = None):
        """Stacked bars of the two phases (MB); returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.2))
        colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
        for x, phase in enumerate(PHASES):
            bottom = 0.0
            for part, color in zip(PARTS, colors, strict=True):
                height = self.phases[phase][part] / 1e6
                ax.bar(
                    x,
                    height,
                    bottom=bottom,
                    color=color,
                    width=0.6,
                    label=part.replace("_", " ") if x == 0 else None,
                )
                bottom += height
        ax.axhline(self.total / 1e6, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(PHASES)), PHASES)
        ax.set_ylabel("MB")
        ax.set_title(title or f"predicted peak {self.total / 1e6:,.0f} MB")
        ax.legend(fontsize=8, loc="upper right")
        return ax


def estimate_training_memory(
    model_or_config: Any,
    *,
    batch_size: int,
    seq_len: int,
    dtype: Any = None,
    quantization: str | None = None,
    lora_rank: int | None = None,
    lora_targets: str | tuple[str, ...] = "all-linear",
    optimizer: str = "adamw",
    gradient_checkpointing: bool = False,
    mixed_precision: str | None = None,
    attn_implementation: str = "sdpa",
    gradient_accumulation_steps: int = 1,
    padded: bool = False,
) -> MemoryEstimate:
    """Predict the peak live tensor bytes of one training step (see the module docstring).

    model_or_config: a loaded model (its dtype and quantization are read from it when
        `dtype`/`quantization` are not given), a transformers config, a dict such as
        ``helpers.numbers.SMOLLM2_135M_CONFIG``, or "smollm2-135m-instruct".
    dtype: dtype of the weights that are not quantized ("fp32", "bf16", "fp16" or a
        torch dtype); default: the model's, else fp32.
    quantization: None, "8bit" or "4bit" (the linear layers of the decoder).
    lora_rank: None for full fine-tuning, else the LoRA rank; `lora_targets` is
        "all-linear" or a tuple of names such as ("q_proj", "v_proj").
    optimizer: "adamw" (2 states per trainable parameter) or "sgd" (none).
    mixed_precision: None, "bf16" or "fp16" (autocast of the forward pass).
    attn_implementation: "sdpa" or "eager".
    gradient_accumulation_steps: micro-batches per optimizer step (the memory is that
        of one micro-batch of `batch_size`, plus gradients kept between them).
    padded: batches with padding (SDPA then repeats keys and values to every head).
    """
    from ..lora import PROJECTIONS as LINEAR_NAMES
    from ..models import QUANTIZATIONS

    shape = Shape.of(model_or_config)
    dtype, quantization = _read_model(model_or_config, dtype, quantization)
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization={quantization!r} is not one of {QUANTIZATIONS}.")
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer={optimizer!r} is not one of {sorted(OPTIMIZER_STATES)}.")
    if attn_implementation not in ATTENTIONS:
        raise ValueError(f"attn_implementation={attn_implementation!r} is not one of {ATTENTIONS}.")
    if mixed_precision is not None:
        mixed_precision = _dtype_name(mixed_precision)
    for name, value in (
        ("batch_size", batch_size),
        ("seq_len", seq_len),
        ("gradient_accumulation_steps", gradient_accumulation_steps),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer.")
    if lora_rank is None and quantization is not None:
        raise ValueError(
            f"A {quantization} model cannot be fine-tuned fully: its weights are frozen "
            "integers. Give lora_rank=... (QLoRA trains LoRA adapters on top)."
        )
    targets = LINEAR_NAMES if lora_targets == "all-linear" else tuple(lora_targets)
    unknown = set(targets) - set(LINEAR_NAMES)
    if unknown:
        raise ValueError(f"unknown LoRA targets {sorted(unknown)}; use names from {LINEAR_NAMES}.")

    D = DTYPE_BYTES[dtype]  # bytes of a weight (and of an activation without autocast)
    c = DTYPE_BYTES[mixed_precision] if mixed_precision else D  # bytes the layers compute in
    autocast = mixed_precision is not None and c != D
    full = lora_rank is None
    L, V, h = shape.num_hidden_layers, shape.vocab_size, shape.hidden_size
    inter, a, kv, d = (
        shape.intermediate_size,
        shape.num_attention_heads,
        shape.num_key_value_heads,
        shape.head_dim,
    )
    N = batch_size * seq_len  # tokens in the batch
    linears = shape.linears()

    # --- weights, gradients, optimizer states ----------------------------------------------
    layer_linear = L * shape.layer_linear_parameters
    if quantization is None:
        weights = shape.parameters * D
    else:
        per_layer = sum(quantized_bytes(i * o, quantization, o) for i, o in linears.values())
        weights = (shape.parameters - layer_linear) * D + L * per_layer
    weights += 2 * (d // 2) * 4  # rotary frequency tables, fp32 buffers
    lora_params = 0 if full else shape.lora_parameters(lora_rank, targets)
    weights += 4 * lora_params  # adapters are fp32
    trainable = shape.parameters if full else lora_params
    g = D if full else 4  # bytes of one gradient (and one optimizer state)
    gradients = trainable * g
    states = OPTIMIZER_STATES[optimizer] * trainable * g
    batch = 3 * N * 8  # input_ids, attention_mask, labels (int64)

    # --- activations saved by one decoder layer, bytes per token ---------------------------
    adapted = {n: (full or n in targets) for n in LINEAR_NAMES}  # does it keep its input?

    def kept_inputs(width: int, in_bytes: int, users: tuple[str, ...], saved: bool) -> int:
        """Bytes per token that the linear layers reading one tensor keep of it.

        `in_bytes`: the dtype of the tensor; `saved`: whether autograd already keeps it
        for another reason (then keeping it again costs nothing).
        """
        n = sum(adapted[u] for u in users)
        if n == 0:
            return 0
        if full:  # autograd keeps the input of a trained weight; autocast casts it first
            if autocast and in_bytes != c:
                return width * c * n
            return 0 if saved else width * in_bytes
        if autocast:  # peft casts to the fp32 adapter's dtype, autocast casts that to c
            return width * c * n
        if in_bytes == 4:  # already fp32, as the adapter: shared
            return 0 if saved else width * 4
        return width * 4 * n  # peft keeps an fp32 copy for each adapter

    norm_out = 4 if autocast else D  # RMSNorm's output: fp32 under autocast (fp32 weights)
    per_token: dict[str, int] = {
        "residual stream, kept in fp32 by the two RMSNorms": 2 * 4 * h,
        "RMSNorm rsqrt": 2 * 4,
        "normalised values before the norm weight": 2 * D * h if full else 0,
        "inputs of q, k, v": kept_inputs(h, norm_out, ("q_proj", "k_proj", "v_proj"), False),
        "inputs of gate, up": kept_inputs(h, norm_out, ("gate_proj", "up_proj"), False),
        "gate, up, SiLU(gate)": 3 * c * inter,
        "SiLU(gate) x up (input of down_proj)": kept_inputs(inter, c, ("down_proj",), False),
    }
    if attn_implementation == "sdpa":
        kv_width = a * d if padded else kv * d
        per_token["q, k, v, attention output"] = c * (2 * a * d + 2 * kv_width)
        per_token["log-sum-exp per head"] = 4 * a
        per_token["input of o_proj"] = kept_inputs(a * d, c, ("o_proj",), True)
    else:  # eager: k and v repeated to every head, the output made contiguous
        per_token["q, k, v (k, v repeated to all heads)"] = c * 3 * a * d
        per_token["input of o_proj (contiguous copy)"] = kept_inputs(a * d, c, ("o_proj",), False)
    if not full:
        per_token["LoRA A outputs"] = (c if autocast else 4) * lora_rank * len(targets)
    layer_bytes = N * sum(per_token.values())
    if attn_implementation == "eager":  # the s x s attention probabilities, fp32 (+ a cast)
        layer_bytes += batch_size * a * seq_len * seq_len * (4 + (c if c != 4 else 0))

    # weight copies under autocast: each fp32 weight multiplied in c is kept for backward
    copies_per_layer = 0
    if autocast:
        dense = 0 if quantization else shape.layer_linear_parameters
        adapters = 0 if full else lora_params // L
        copies_per_layer = c * (dense + adapters)
    head_copy = c * shape.embedding_parameters if autocast else 0

    # final norm, output layer input
    final = N * (4 * h + (D * h if full else 0) + ((c if autocast else D) * h if full else 0))
    logits = 3 * 4 * N * V  # fp32 log-probabilities, loss gradient, logits gradient

    if gradient_checkpointing:
        saved_layers = L * N * (4 if autocast else D) * h
        saved_copies = 0
    else:
        saved_layers = L * layer_bytes
        saved_copies = L * copies_per_layer
    base_activations = saved_layers + saved_copies + head_copy + final + batch
    accumulated = gradients if gradient_accumulation_steps > 1 else 0

    candidates: list[tuple[str, dict[str, int]]] = []
    details = {
        "saved by the decoder layers": saved_layers,
        "weight copies made by autocast": saved_copies + head_copy,
        "final norm and output-layer input": final,
        "logits: log-probabilities and their gradients (fp32)": logits,
        "the batch": batch,
    }
    candidates.append(
        (
            "start of backward",
            {"gradients": accumulated, "activations": base_activations + logits},
        )
    )
    if full:  # the output layer's weight gradient appears while the activations are alive
        head_grad = shape.embedding_parameters * g
        candidates.append(
            (
                "output-layer backward",
                {
                    "gradients": max(accumulated, head_grad),
                    "activations": base_activations + c * N * V + c * N * h,
                },
            )
        )
        # end of backward: every gradient, plus the embedding's own gradient and their sum
        # (with gradients from earlier micro-batches, the sum is added to them: one more)
        copies = (2 if shape.tie_word_embeddings else 0) + (1 if accumulated else 0)
        extra = copies * shape.embedding_parameters * g
        candidates.append(
            ("end of backward", {"gradients": gradients + extra, "activations": batch})
        )
    if gradient_checkpointing:  # one layer recomputed, plus the gradient flowing through
        recompute = layer_bytes + copies_per_layer + 2 * N * 4 * h
        layer_grads = shape.layer_linear_parameters * g if full else 0
        candidates.append(
            (
                "recomputing a layer",
                {
                    "gradients": accumulated
                    + (shape.embedding_parameters * g + layer_grads if full else 0),
                    "activations": saved_layers + head_copy + final + batch + recompute,
                },
            )
        )
    fixed = {"weights": weights, "optimizer_states": states}
    best_name, best = None, None
    for name, parts in candidates:
        full_parts = {**fixed, "gradients": 0, "activations": 0, **parts}
        if best is None or sum(full_parts.values()) > sum(best.values()):
            best_name, best = name, full_parts
    assert best is not None
    optimizer_phase = {**fixed, "gradients": gradients, "activations": batch}
    phases = {
        "forward/backward": {p: best[p] for p in PARTS},
        "optimizer step": {p: optimizer_phase[p] for p in PARTS},
    }
    peak_phase = max(PHASES, key=lambda p: sum(phases[p].values()))
    peak = phases[peak_phase]
    settings = {
        "batch_size": batch_size,
        "seq_len": seq_len,
        "dtype": dtype,
        "quantization": quantization,
        "lora_rank": lora_rank,
        "optimizer": optimizer,
        "gradient_checkpointing": gradient_checkpointing,
        "mixed_precision": mixed_precision,
        "attn_implementation": attn_implementation,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "padded": padded,
        "moment": best_name if peak_phase == PHASES[0] else "optimizer step",
    }
    return MemoryEstimate(
        weights=peak["weights"],
        gradients=peak["gradients"],
        optimizer_states=peak["optimizer_states"],
        activations=peak["activations"],
        total=sum(peak.values()),
        peak_phase=peak_phase,
        phases=phases,
        details={**details, **{f"per token and layer: {k}": v for k, v in per_token.items()}},
        trainable_parameters=trainable,
        settings=settings,
    )


def _read_model(obj: Any, dtype: Any, quantization: str | None) -> tuple[str, str | None]:
    """The dtype and quantization to assume: given ones win, else read from a model."""
    if dtype is None:
        dtype = "fp32"
        params = getattr(obj, "parameters", None)
        if callable(params):
            for p in params():
                if p.is_floating_point():
                    dtype = _dtype_name(p.dtype)
                    break
    if quantization is None and not isinstance(obj, (str, Mapping)):
        from ..models import quantization_of  # imports torch: the calculator stays light

        quantization = quantization_of(obj)
    return _dtype_name(dtype), quantization


# --- what the operating system (or the GPU driver) sees -----------------------------------

# Measured on this course's machines (Linux, glibc 2.3x malloc, torch 2.13 CPU, SmolLM2 fp32),
# each configuration in a fresh process, two steps (``helpers.memory.process``):
#   config (r=16 LoRA unless "full")   live peak   peak RSS   RSS - runtime - live
#   LoRA 2 x 64                           827 MB    1,458 MB        184 MB
#   LoRA 4 x 128                        1,520 MB    2,475 MB        508 MB
#   LoRA 8 x 256                        4,289 MB    6,659 MB      1,924 MB
#   LoRA 4 x 128, checkpointing           935 MB    1,765 MB        383 MB
#   full 2 x 64                         2,379 MB    2,985 MB        159 MB
#   full 4 x 128 (MALLOC_ARENA_MAX=1)   2,605 MB    3,493 MB        441 MB
# The runtime (RSS after importing torch, transformers, peft) was 447 MB every time. The
# first step's peak RSS was the runtime plus the live peak plus about 60 MB; the second
# step's added what malloc had kept from the first. With MALLOC_TRIM_THRESHOLD_=0 or
# MALLOC_MMAP_THRESHOLD_=65536 (fixed thresholds) the last column fell to about 50 MB
# (LoRA and full, 4 x 128), with MALLOC_ARENA_MAX=1 it barely moved.
CPU_RUNTIME_BYTES = 450_000_000
"""RSS of Python with torch, transformers and peft imported, before a model is loaded."""
CPU_CACHED_FRACTION = 0.5
"""Freed bytes the C allocator keeps, per byte of a step's transient tensors (glibc)."""
CPU_FIXED_OVERHEAD_BYTES = 100_000_000
"""First-step one-time allocations: oneDNN/BLAS workspaces, autograd's graph, thread pools."""
CPU_TOLERANCE = 0.20
"""Stated uncertainty of the CPU prediction (measured peaks fell within it)."""

CUDA_CONTEXT_BYTES = (300_000_000, 500_000_000, 1_000_000_000)
"""(low, typical, high) CUDA context, kernels and cuBLAS workspace; varies with GPU and driver."""
CUDA_CACHED_FRACTION = (0.0, 0.10, 0.30)
"""(low, typical, high) reserved-but-unallocated memory, per byte of the allocated peak."""


@dataclass(frozen=True)
class ProcessPrediction:
    """A predicted peak of the memory the operating system or the GPU driver counts.

    ``predicted`` is the central value and ``low``/``high`` its stated uncertainty, in
    bytes; ``parts`` add up to ``predicted``; ``quantity`` says what is compared.
    """

    device: str
    quantity: str
    predicted: int
    low: int
    high: int
    parts: dict[str, int]
    live_tensors: int

    def fits(self, gigabytes: float) -> bool:
        """Whether the central prediction fits in `gigabytes` GB (10**9 bytes)."""
        return self.predicted <= gigabytes * 1e9

    @property
    def label(self) -> str:
        """What is compared, in a few words (for verdict lines)."""
        if self.device == "cpu":
            return "predicted peak RSS"
        return "predicted GPU memory (reserved + CUDA context)"

    def short(self) -> str:
        """'predicted peak RSS 2.53 GB (2.03 to 3.04)': the value and its stated range."""
        return (
            f"{self.label} {self.predicted / 1e9:.2f} GB "
            f"(range {self.low / 1e9:.2f} to {self.high / 1e9:.2f})"
        )

    def __str__(self) -> str:
        rows = [
            f"{self.quantity}: {self.predicted / 1e9:.2f} GB "
            f"({self.low / 1e9:.2f} to {self.high / 1e9:.2f} GB)"
        ]
        rows += [f"  {name:<44}{size / 1e6:>10,.0f} MB" for name, size in self.parts.items()]
        return "\n".join(rows)


def predict_process_memory(
    estimate: MemoryEstimate, device: str = "cpu", runtime_bytes: int | None = None
) -> ProcessPrediction:
    """The peak memory the OS (CPU: RSS) or the driver (CUDA) will see for this estimate.

    **CPU**: the runtime (Python and its libraries, ``runtime_bytes``, default
    ``CPU_RUNTIME_BYTES``), plus the live tensor peak, plus what the C allocator keeps
    of the step's freed tensors: glibc's malloc raises its mmap threshold (up to 32 MiB)
    after the first large frees, so later tensors below it come from heaps that keep
    freed memory and fragment, a fraction ``CPU_CACHED_FRACTION`` of the transient bytes
    (activations and gradients, everything above weights and optimizer states); plus a
    fixed first-step overhead. ±``CPU_TOLERANCE``.

    **CUDA**: PyTorch's caching allocator rounds every block up (512 bytes; 2 MiB
    segments, 20 MiB for blocks of 1-10 MiB) and keeps freed blocks for reuse, so the
    reserved peak (``torch.cuda.max_memory_reserved``) exceeds the allocated peak
    (``estimate.total``) by ``CUDA_CACHED_FRACTION``; ``nvidia-smi`` adds the CUDA context
    (``CUDA_CONTEXT_BYTES``). These are documented facts, not measured here: the range
    is wide on purpose. (On the GPU the runtime's host memory is RAM, not GPU memory.)
    """
    live = estimate.total
    if device == "cpu":
        runtime = CPU_RUNTIME_BYTES if runtime_bytes is None else int(runtime_bytes)
        steady = estimate.weights + estimate.optimizer_states
        cached = int(CPU_CACHED_FRACTION * max(live - steady, 0))
        parts = {
            "runtime (Python, torch, libraries)": runtime,
            "live tensors (the estimate)": live,
            "freed memory the allocator keeps": cached,
            "first-step one-time allocations": CPU_FIXED_OVERHEAD_BYTES,
        }
        predicted = sum(parts.values())
        return ProcessPrediction(
            device="cpu",
            quantity="predicted peak RSS of the process",
            predicted=predicted,
            low=int(predicted * (1 - CPU_TOLERANCE)),
            high=int(predicted * (1 + CPU_TOLERANCE)),
            parts=parts,
            live_tensors=live,
        )
    if device == "cuda":
        low_f, mid_f, high_f = CUDA_CACHED_FRACTION
        low_c, mid_c, high_c = CUDA_CONTEXT_BYTES
        round_to = 2 * 1024 * 1024
        rounded = -(-live // round_to) * round_to
        parts = {
            "live tensors (the estimate)": live,
            "allocator rounding and cache": rounded - live + int(mid_f * live),
            "CUDA context": mid_c,
        }
        return ProcessPrediction(
            device="cuda",
            quantity="predicted peak reserved GPU memory plus the CUDA context",
            predicted=sum(parts.values()),
            low=rounded + int(low_f * live) + low_c,
            high=rounded + int(high_f * live) + high_c,
            parts=parts,
            live_tensors=live,
        )
    raise ValueError(f"device={device!r} is not 'cpu' or 'cuda'.")
