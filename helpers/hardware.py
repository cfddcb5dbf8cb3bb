"""What the machine can do: device, native bf16, 4-bit/8-bit quantization.

Every default that depends on hardware (dtype, autocast, quantization backend) is
decided here, from what the hardware really supports, never from a guess. bf16
on a CPU without bf16 instructions is *emulated*: it works, but a matrix
multiply runs many times slower than in fp32, so we only turn it on where it
is native.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

import torch


def device_name() -> str:
    """The best device for training: "cuda", "mps" or "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def bf16_native(device: str | None = None) -> bool:
    """True when bf16 matmuls run in hardware on `device` (not emulated).

    CUDA: compute capability 8.0 (Ampere) or newer. CPU: oneDNN must report bf16
    support, and on an x86 CPU whose flags we can read, the CPU must also have real
    bf16 instructions (AVX512-BF16 or AMX-BF16): oneDNN already says yes for any
    AVX-512 CPU, where bf16 is converted in software and is no faster than fp32.
    MPS: no, bf16 there is not reliably fast.
    """
    device = device or device_name()
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
    if device == "cpu":
        flags = _cpu_flags()
        if "avx2" in flags and not {"avx512_bf16", "amx_bf16"} & flags:
            return False  # an x86 CPU without bf16 instructions
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return bool({"avx512_bf16", "amx_bf16"} & flags)
    return False


def bitsandbytes_available() -> bool:
    """True when bitsandbytes is installed (it has a CPU backend since 0.45)."""
    return importlib.util.find_spec("bitsandbytes") is not None


def bitsandbytes_devices() -> tuple[str, ...]:
    """The devices where the course runs bitsandbytes' 8-bit and 4-bit layers.

    The CPU backend ships with bitsandbytes since 0.45 and CUDA is its home. Apple GPUs
    (MPS) are left out: the pinned release's MPS backend fetches its kernels from the
    hub at run time (impossible offline) and the course has not tested it.
    """
    if not bitsandbytes_available():
        return ()
    return ("cuda", "cpu") if torch.cuda.is_available() else ("cpu",)


_said: set[str] = set()


def _say_once(message: str) -> None:
    """Print `message` the first time only (a notebook calls the loader many times)."""
    if message not in _said:
        _said.add(message)
        print(message)


def placement(quantization: str | None = None, best: str | None = None) -> str:
    """The one rule for where a model with this quantization runs: the best device
    (``device_name``), unless bitsandbytes cannot run 8-bit/4-bit layers there but can on
    the CPU (an Apple-silicon Mac): then the CPU. Says nothing (see ``training_device``).

    ``helpers.load_model``, ``helpers.sft_config``, the doctor and the benchmark all ask it.
    """
    best = device_name() if best is None else best
    if quantization is None:
        return best
    supported = bitsandbytes_devices()
    if best in supported or "cpu" not in supported:
        return best  # where bitsandbytes is missing, loading says how to install it
    return "cpu"


def training_device(quantization: str | None = None) -> str:
    """The device the course loads and trains a model on, given its quantization
    (:func:`placement`); when the rule moves a quantized model to the CPU, it says so once.
    ``helpers.load_model`` and ``helpers.sft_config`` both ask this function, so the model
    and the training arguments agree on the device.
    """
    best = device_name()
    where = placement(quantization, best)
    if where == best:
        return best
    _say_once(
        f"{quantization} quantization: bitsandbytes has no {best.upper()} backend here, so "
        "the model is loaded and trained on the CPU (quantization=None would use "
        f"{best.upper()})."
    )
    return "cpu"


@dataclass(frozen=True)
class Hardware:
    """A summary a learner can print: what runs where, and why."""

    device: str
    device_label: str
    threads: int
    bf16_native: bool
    cpu_capability: str
    bitsandbytes: bool

    def __str__(self) -> str:
        return "\n".join(
            [
                f"device:            {self.device} ({self.device_label})",
                f"torch threads:     {self.threads}",
                f"native bf16:       {self.bf16_native}",
                f"CPU instructions:  {self.cpu_capability}",
                f"bitsandbytes:      {self.bitsandbytes}",
            ]
        )


def describe() -> Hardware:
    """Detect the hardware once and return a printable summary."""
    device = device_name()
    if device == "cuda":
        label = torch.cuda.get_device_name(0)
    elif device == "mps":
        label = "Apple GPU"
    else:
        label = "CPU"
    return Hardware(
        device=device,
        device_label=label,
        threads=torch.get_num_threads(),
        bf16_native=bf16_native(device),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        bitsandbytes=bitsandbytes_available(),
    )
