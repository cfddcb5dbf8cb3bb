"""Measure memory: the peak of live tensor bytes (CPU and GPU) and the process's RSS.

What "memory" means here, precisely, because the estimator (``estimate.py``) predicts
the same quantity:

**Live tensor bytes** are the bytes of every tensor storage that is alive at a given
moment: weights, buffers, optimizer states, the batch, and everything the training
step allocates (saved activations, gradients, temporaries). A storage shared by
several tensors (views, tied weights) counts once. The *peak* is the largest value
that sum reaches during the measured code.

How it is measured:

- **On a CUDA GPU** PyTorch's caching allocator keeps the count for us:
  ``torch.cuda.reset_peak_memory_stats()`` before and ``torch.cuda.max_memory_allocated()``
  after. It counts every tensor on the GPU (not only the ones you named), and not the
  memory the allocator has reserved but not handed out (``memory_reserved``), nor
  the CUDA context (a few hundred MB that ``nvidia-smi`` shows).
- **On the CPU** PyTorch keeps no such count (there is no ``torch.cpu.max_memory_allocated``).
  :class:`LiveTensorTracker` is a ``TorchDispatchMode``: every PyTorch operation
  passes through it, so it sees each newly allocated output storage, adds its size,
  and registers a ``weakref.finalize`` callback that subtracts it when the storage is
  freed. Outputs that reuse an input's storage (views, in-place operations) are
  not new memory and are skipped. Tensors that existed before the measurement start
  are counted from the objects you name (a model, an optimizer, a batch), each
  storage once, by :func:`tensor_bytes`.

What the CPU tracker does *not* see, and why that is acceptable:

- scratch memory an operation allocates and frees *inside* itself (for example a
  matrix-multiply workspace): it never becomes an output. Checked against the
  allocator's own events (``torch.profiler`` with ``profile_memory=True``, which
  records every allocation of PyTorch's CPU allocator) on SmolLM2 training steps,
  the tracked peak agreed to within a few bytes, so such scratch memory never set
  the peak. The profiler is not used here because it costs more and its C++ backend
  prints log lines to stderr, which a notebook shows.
- tensors that existed before the measurement and that you did not name;
- memory that is not a tensor: the Python interpreter, imported libraries, the
  tokenizer, and what the C allocator keeps after a free. That is all in the
  **resident set size (RSS)**, the RAM the operating system has given the process,
  which is also reported. On Linux the peak RSS of the measured span is read
  from ``VmHWM`` after resetting it through ``/proc/self/clear_refs``; elsewhere
  only RSS before and after are available (``rss_peak`` is then None).

The dispatch mode adds a little Python work to every operation (a few tens of µs),
about 10 to 20% of the time of a short training step of SmolLM2 on a CPU.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .. import hardware
from ..formatting import megabytes
from ..models import is_quantized
from ..training import lora_config

# --- counting the tensors that already exist ------------------------------------------------


def _tensors_of(obj: Any, seen: set[int]) -> Iterable[torch.Tensor]:
    """Every tensor held by `obj`: a tensor, a module, an optimizer, or a container of them."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
        quant_state = getattr(obj, "quant_state", None)  # bitsandbytes 4-bit weights
        if quant_state is not None:
            yield from _tensors_of(vars(quant_state), seen)
    elif isinstance(obj, torch.nn.Module):
        for tensor in obj.parameters():
            yield from _tensors_of(tensor, seen)
        for tensor in obj.buffers():
            yield from _tensors_of(tensor, seen)
    elif isinstance(obj, torch.optim.Optimizer):
        for state in obj.state.values():
            yield from _tensors_of(state, seen)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from _tensors_of(value, seen)
    elif isinstance(obj, (list, tuple, set)):
        for value in obj:
            yield from _tensors_of(value, seen)
    elif hasattr(obj, "absmax") and hasattr(obj, "blocksize"):  # a nested bitsandbytes QuantState
        yield from _tensors_of(vars(obj), seen)


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    storage = tensor.untyped_storage()
    return (str(tensor.device), storage.data_ptr() or id(storage))


def tensor_bytes(*objects: Any, device: str | None = None) -> int:
    """Bytes of the tensor storages held by `objects`, each storage counted once.

    Objects can be tensors, modules (parameters and buffers, including the
    quantization state of bitsandbytes 4-bit weights), optimizers (their state),
    or lists/tuples/dicts of these. With `device` ("cpu", "cuda"), count only
    storages on that kind of device.
    """
    seen_objects: set[int] = set()
    storages: dict[tuple[str, int], int] = {}
    for obj in objects:
        for tensor in _tensors_of(obj, seen_objects):
            if device is not None and tensor.device.type != device:
                continue
            storages[_storage_key(tensor)] = tensor.untyped_storage().nbytes()
    return sum(storages.values())


# --- the CPU tracker -----------------------------------------------------------------------


def _tensors_in(obj: Any) -> Iterable[torch.Tensor]:
    """The tensors in an operation's arguments or results (nested lists, tuples, dicts).

    A hand-written walk: ``torch.utils._pytree`` does the same but costs a third of the
    tracker's time.
    """
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            if isinstance(item, torch.Tensor):
                yield item
            elif isinstance(item, (list, tuple, dict)):
                yield from _tensors_in(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors_in(item)


class LiveTensorTracker(TorchDispatchMode):
    """Adds up the bytes of tensor storages allocated while it is active, minus those freed.

    ``current`` is the live total (of storages allocated since the tracker started),
    ``peak`` its maximum; ``mark(label)`` closes a phase and records its peak. Use it
    as a context manager, or through :class:`MemoryTracker`, which adds the bytes
    that were alive before.
    """

    def __init__(self, device: str | None = None, timeline: bool = False):
        super().__init__()
        self.device = device
        self.current = 0
        self.peak = 0
        self.allocations = 0
        self.timeline: list[int] | None = [] if timeline else None
        self.phases: dict[str, int] = {}
        self._phase_peak = 0
        self._finalizers: dict[int, weakref.finalize] = {}

    def _freed(self, key: int, nbytes: int) -> None:
        self.current -= nbytes
        self._finalizers.pop(key, None)

    def _add(self, storage: torch.UntypedStorage, nbytes: int) -> None:
        key = id(storage)
        if key in self._finalizers:
            return
        self._finalizers[key] = weakref.finalize(storage, self._freed, key, nbytes)
        self.current += nbytes
        self.allocations += 1
        if self.current > self.peak:
            self.peak = self.current
        if self.current > self._phase_peak:
            self._phase_peak = self.current

    def mark(self, label: str) -> None:
        """End a phase: remember the peak since the previous mark under `label`.

        A label marked again (one forward per micro-batch) keeps the largest peak.
        """
        self.phases[label] = max(self.phases.get(label, self._phase_peak), self._phase_peak)
        self._phase_peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in _tensors_in((args, kwargs))}
        for tensor in _tensors_in(out):
            if self.device is not None and tensor.device.type != self.device:
                continue
            storage = tensor.untyped_storage()
            pointer = storage.data_ptr()
            if pointer == 0 or pointer in inputs:  # empty, a view, or an in-place result
                continue
            self._add(storage, storage.nbytes())
        if self.timeline is not None:
            self.timeline.append(self.current)
        return out

    def detach(self) -> None:
        """Stop listening for frees (call after the tracker has exited)."""
        for finalizer in list(self._finalizers.values()):
            finalizer.detach()
        self._finalizers.clear()


# --- the process's resident set size -------------------------------------------------------


def rss_bytes() -> int | None:
    """The process's resident set size now (RAM in use, as the OS counts it), or None."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    return proc_status_bytes("VmRSS")


def proc_status_bytes(field_name: str) -> int | None:
    """A byte count from /proc/self/status (``VmRSS``, ``VmHWM``, ...); None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset Linux's peak-RSS counter (VmHWM) to the current RSS; False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return proc_status_bytes("VmHWM") is not None
    except OSError:
        return False


# --- results -------------------------------------------------------------------------------


@dataclass
class PeakMemory:
    """What :class:`MemoryTracker` measured, in bytes (the module docstring defines each)."""

    device: str
    method: str
    baseline_bytes: int  # live tensor bytes when the measurement started
    peak_bytes: int  # largest live tensor bytes during it
    end_bytes: int  # live tensor bytes at its end
    seconds: float
    phases: dict[str, int] = field(default_factory=dict)  # peak (absolute) of each marked phase
    rss_before: int | None = None
    rss_peak: int | None = None
    rss_after: int | None = None
    timeline: list[int] | None = None  # live bytes after each operation (CPU, if asked)
    result: Any = None  # what the measured function returned (measure_peak_memory)

    @property
    def added_bytes(self) -> int:
        """How far the peak rose above the starting point."""
        return self.peak_bytes - self.baseline_bytes

    def __str__(self) -> str:
        lines = [
            f"device:             {self.device} ({self.method})",
            f"tensors at start:   {megabytes(self.baseline_bytes, 1)}",
            f"peak tensors:       {megabytes(self.peak_bytes, 1)}",
            f"tensors at end:     {megabytes(self.end_bytes, 1)}",
        ]
        for label, value in self.phases.items():
            lines.append(f"  peak in {label + ':':<11}{megabytes(value, 1)}")
        lines.append(
            f"process RSS:        {megabytes(self.rss_before, 1)} before, "
            f"{megabytes(self.rss_peak, 1)} peak, "
            f"{megabytes(self.rss_after, 1)} after"
        )
        lines.append(f"time:               {self.seconds:.2f} s")
        return "\n".join(lines)


class MemoryTracker:
    """Context manager: the peak of live tensor bytes (and RSS) inside a ``with`` block.

    ``objects`` are what already holds memory when the block starts (a model, an
    optimizer, a batch): their tensors are counted once as the starting point. On a
    CUDA device the allocator's own counters are used instead, and they count every
    tensor on the device. ``tracker.mark("forward")`` inside the block records the
    peak of each phase. After the block, ``tracker.result`` is a :class:`PeakMemory`.

        with MemoryTracker(model, optimizer) as tracker:
            loss = model(**batch).loss
            tracker.mark("forward")
            loss.backward()
            tracker.mark("backward")
        print(tracker.result)
    """

    def __init__(self, *objects: Any, device: str | None = None, timeline: bool = False):
        self.objects = objects
        self.device = device or _device_of(objects)
        self.want_timeline = timeline
        self.result: PeakMemory | None = None
        self._tracker: LiveTensorTracker | None = None

    def __enter__(self) -> MemoryTracker:
        self._rss_before = rss_bytes()
        self._rss_peak_known = reset_peak_rss()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._baseline = torch.cuda.memory_allocated()
            self._cuda_phase_start = self._baseline
            self._phases: dict[str, int] = {}
        else:
            self._baseline = tensor_bytes(*self.objects, device=self.device)
            self._tracker = LiveTensorTracker(self.device, timeline=self.want_timeline)
            self._tracker.__enter__()
        self._start = time.perf_counter()
        return self

    def mark(self, label: str) -> None:
        """Record the peak since the previous mark (or the start) as phase `label`."""
        if self._tracker is not None:
            self._tracker.mark(label)
        elif self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            self._phases[label] = max(self._phases.get(label, peak), peak)
            torch.cuda.reset_peak_memory_stats()

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - self._start
        if self._tracker is not None:
            tracker = self._tracker
            tracker.__exit__(*exc)
            tracker.detach()
            base = self._baseline
            result = PeakMemory(
                device=self.device,
                method="live tensor storages, tracked per operation",
                baseline_bytes=base,
                peak_bytes=base + max(tracker.peak, 0),
                end_bytes=base + tracker.current,
                seconds=seconds,
                phases={k: base + v for k, v in tracker.phases.items()},
                timeline=None if tracker.timeline is None else [base + v for v in tracker.timeline],
            )
        else:
            phases = dict(self._phases)
            peak = max([torch.cuda.max_memory_allocated(), *phases.values()])
            result = PeakMemory(
                device=self.device,
                method="torch.cuda.max_memory_allocated",
                baseline_bytes=self._baseline,
                peak_bytes=peak,
                end_bytes=torch.cuda.memory_allocated(),
                seconds=seconds,
                phases=phases,
            )
        result.rss_before = self._rss_before
        result.rss_after = rss_bytes()
        if self._rss_peak_known:
            result.rss_peak = proc_status_bytes("VmHWM")
        self.result = result


def _device_of(objects: Iterable[Any]) -> str:
    for obj in objects:
        for tensor in _tensors_of(obj, set()):
            return tensor.device.type
    return "cpu"


def measure_peak_memory(
    fn: Callable[..., Any], *args: Any, include: Iterable[Any] = (), **kwargs: Any
) -> PeakMemory:
    """Run ``fn(*args, **kwargs)``; return its :class:`PeakMemory` (``.result``: its return).

    `include`: objects whose tensors exist before the call and count (a model, an
    optimizer, a batch); see :class:`MemoryTracker`.
    """
    with MemoryTracker(*include) as tracker:
        value = fn(*args, **kwargs)
    assert tracker.result is not None
    tracker.result.result = value
    return tracker.result


# --- one training step, measured ------------------------------------------------------------

OPTIMIZERS = ("adamw", "sgd")
MIXED_PRECISION = (None, "bf16", "fp16")


@dataclass
class StepMemory:
    """One training step, measured: the peak of live tensor bytes and the time it took."""

    settings: dict[str, Any]
    memory: PeakMemory
    tokens: int

    @property
    def peak_bytes(self) -> int:
        return self.memory.peak_bytes

    @property
    def seconds(self) -> float:
        return self.memory.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.memory.seconds

    def __str__(self) -> str:
        described = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return (
            f"one training step ({described})\n{self.memory}\n"
            f"throughput:         {self.tokens_per_second:,.0f} tokens/s"
        )


def _make_optimizer(params: list[torch.nn.Parameter], name: str) -> torch.optim.Optimizer:
    """The optimizer the Trainer would use (fused AdamW), with learning rate 0.

    A learning rate of 0 makes the measured step leave the weights exactly as they were,
    while allocating and updating every buffer a real step does.
    """
    if name == "adamw":
        try:
            return torch.optim.AdamW(params, lr=0.0, weight_decay=0.0, fused=True)
        except (RuntimeError, ValueError):  # a device without a fused kernel
            return torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.0)
    raise ValueError(f"optimizer={name!r} is not one of {OPTIMIZERS}.")


def measure_training_step(
    model: torch.nn.Module,
    *,
    batch_size: int,
    seq_len: int,
    lora: Any = None,
    gradient_checkpointing: bool = False,
    mixed_precision: str | None = None,
    attn_implementation: str | None = None,
    optimizer: str = "adamw",
    gradient_accumulation_steps: int = 1,
    timeline: bool = False,
    seed: int = 0,
) -> StepMemory:
    """Run one training step on a random batch and measure its peak memory and time.

    The step is what ``Trainer`` does for one batch: forward pass with labels (the
    standard causal-LM loss over the full logits), ``loss.backward()``,
    ``optimizer.step()`` and ``optimizer.zero_grad(set_to_none=True)``. Before it, the
    optimizer's state is created by one step on zero gradients, so the measured step
    is a steady-state one (every step after the first looks like it).

    model: a causal LM (loaded in any dtype, quantized or not). It is left as it was:
        same weights (the learning rate is 0), same trainable flags, no adapters,
        no checkpointing, same attention implementation, eval mode.
    lora: None for full fine-tuning, a rank (int) for LoRA on all linear layers, or a
        peft ``LoraConfig``. A quantized model needs LoRA.
    mixed_precision: None, "bf16" or "fp16": run the forward pass under ``torch.autocast``.
    attn_implementation: "sdpa" or "eager" (None keeps the model's).
    optimizer: "adamw" (two fp32 states per trainable parameter) or "sgd" (none).
    gradient_accumulation_steps: forward and backward passes on that many batches of
        `batch_size` (each loss divided by their number) before the optimizer step.
    timeline: keep the live bytes after every operation (CPU only), to plot.
    """
    if gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps={gradient_accumulation_steps} must be >= 1.")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision={mixed_precision!r} is not one of {MIXED_PRECISION}.")
    if lora is None and is_quantized(model):
        raise ValueError(
            "A quantized model's weights cannot be trained directly: pass lora=<rank> "
            "(LoRA adapters on top of the frozen quantized weights)."
        )
    device = next(model.parameters()).device
    settings = {
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lora": lora if lora is None or isinstance(lora, int) else f"r={lora.r}",
        "gradient_checkpointing": gradient_checkpointing,
        "mixed_precision": mixed_precision,
        "attn_implementation": attn_implementation or model.config._attn_implementation,
        "optimizer": optimizer,
        "gradient_accumulation_steps": gradient_accumulation_steps,
    }
    trainable_before = {name: p.requires_grad for name, p in model.named_parameters()}
    attn_before = model.config._attn_implementation
    net = model
    try:
        if attn_implementation is not None and attn_implementation != attn_before:
            model.set_attn_implementation(attn_implementation)
        if lora is not None:
            from peft import get_peft_model

            config = lora_config(r=lora) if isinstance(lora, int) else lora
            net = get_peft_model(model, config)
        elif not hasattr(model, "peft_config"):  # full fine-tuning: every weight trains
            for p in model.parameters():
                p.requires_grad_(p.is_floating_point())
        if gradient_checkpointing:
            model.activation_checkpointing_enable()
        net.train()
        params = [p for p in net.parameters() if p.requires_grad]
        opt = _make_optimizer(params, optimizer)
        for p in params:  # create the optimizer state without a forward pass
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.zero_grad(set_to_none=True)

        generator = torch.Generator().manual_seed(seed)
        batches = []
        for _ in range(gradient_accumulation_steps):
            ids = torch.randint(
                0, model.config.vocab_size, (batch_size, seq_len), generator=generator
            )
            batches.append(
                {
                    "input_ids": ids.to(device),
                    "attention_mask": torch.ones_like(ids).to(device),
                    "labels": ids.to(device),
                }
            )

        def autocast():
            if mixed_precision is None:
                return contextlib.nullcontext()
            return torch.autocast(device.type, dtype=getattr(torch, _TORCH_DTYPES[mixed_precision]))

        with MemoryTracker(net, opt, batches, device=device.type, timeline=timeline) as tracker:
            for batch in batches:
                with autocast():
                    loss = net(**batch, use_cache=False).loss / gradient_accumulation_steps
                tracker.mark("forward")
                loss.backward()
                del loss
                tracker.mark("backward")
            opt.step()
            opt.zero_grad(set_to_none=True)
            tracker.mark("optimizer")
        del opt, params
    finally:
        if gradient_checkpointing:
            model.activation_checkpointing_disable()
        if net is not model:
            net.unload()
        for name, p in model.named_parameters():
            p.requires_grad_(trainable_before.get(name, p.requires_grad))
            p.grad = None
        if model.config._attn_implementation != attn_before:
            model.set_attn_implementation(attn_before)
        model.eval()
    assert tracker.result is not None
    tokens = batch_size * seq_len * gradient_accumulation_steps
    return StepMemory(settings=settings, memory=tracker.result, tokens=tokens)


_TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def attention_support(device: str | None = None) -> dict[str, tuple[bool, str]]:
    """Which attention implementations can run here: name -> (available, why).

    "eager" and "sdpa" run everywhere. "flash_attention_2" needs an NVIDIA GPU of the
    Ampere generation or newer (compute capability 8.0+), 16-bit weights, and the
    ``flash-attn`` package, which the course does not install; it is never required.
    """
    device = device or hardware.device_name()
    support = {
        "eager": (True, "plain PyTorch matrix products; keeps the s x s attention matrix"),
        "sdpa": (True, "torch.nn.functional.scaled_dot_product_attention; fused kernels"),
    }
    if device != "cuda":
        support["flash_attention_2"] = (False, f"needs an NVIDIA GPU; this device is {device}")
    elif torch.cuda.get_device_capability()[0] < 8:
        support["flash_attention_2"] = (False, "needs compute capability 8.0 (Ampere) or newer")
    else:
        from transformers.utils import is_flash_attn_2_available

        if is_flash_attn_2_available():
            support["flash_attention_2"] = (True, "flash-attn is installed; load in bf16/fp16")
        else:
            support["flash_attention_2"] = (False, "the flash-attn package is not installed")
    return support
