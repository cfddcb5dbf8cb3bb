"""Measure one training configuration in a fresh Python process: live tensors and RSS.

The process's resident set size depends on everything that ran in it before (the C
allocator keeps freed memory for reuse), so a fair measurement of "how much RAM does
this configuration need" starts a new interpreter for it. :func:`measure_in_fresh_process`
does that: the child imports the course's libraries, loads the model, and runs
``steps`` training steps with :func:`~helpers.memory.measure.measure_training_step`;
it reports

- ``rss_start``: RSS after the imports, before the model (Python, torch, transformers,
  peft: the runtime);
- ``rss_loaded``: RSS with the model loaded (the runtime plus the weights);
- ``live_peak``: the largest live tensor bytes of a step (what the estimator predicts);
- ``rss_peak``: the largest RSS of the whole process (Linux ``VmHWM``), loading included.

``env`` sets environment variables in the child only (for example ``MALLOC_ARENA_MAX``
or ``LD_PRELOAD`` for another allocator), so allocator settings can be compared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from ..repo import PACKAGE_PARENT, child_env

_MARK = "PROCESS-MEMORY "


@dataclass(frozen=True)
class ProcessMeasurement:
    """What one fresh process measured, in bytes (the module docstring defines each)."""

    settings: dict[str, Any]
    rss_start: int
    rss_loaded: int
    live_peak: int
    rss_peak: int
    step_seconds: float  # the fastest of the measured steps
    step_rss_peaks: tuple[int, ...] = ()  # peak RSS of each step (the first one costs more)
    rss_after: int = 0  # RSS after the last step, its tensors freed
    live_after: int = 0  # live tensor bytes after the last step (weights, states, batch)
    malloc_free: int | None = None  # freed bytes glibc's malloc keeps, after the last step

    @property
    def runtime_bytes(self) -> int:
        """RSS that is not the weights: the interpreter and libraries."""
        return self.rss_start


def measure_in_fresh_process(
    model: str = "smollm2-135m-instruct",
    *,
    quantization: str | None = None,
    steps: int = 2,
    device: str = "cpu",
    env: dict[str, str] | None = None,
    timeout: float = 600,
    **step_settings: Any,
) -> ProcessMeasurement:
    """Run `steps` training steps of `model` in a new interpreter; return its memory.

    `step_settings` are keyword arguments of ``measure_training_step`` (batch_size,
    seq_len, lora, gradient_checkpointing, mixed_precision, ...). The child runs offline
    with one thread unless `env` says otherwise, on the CPU unless `device` says otherwise.
    """
    request = {
        "model": model,
        "quantization": quantization,
        "steps": steps,
        "device": device,
        **step_settings,
    }
    child = child_env(
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        MKL_NUM_THREADS=os.environ.get("MKL_NUM_THREADS", "1"),
        **(env or {}),
    )
    done = subprocess.run(
        [sys.executable, "-m", "helpers.memory.process", json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child,
        cwd=PACKAGE_PARENT,
    )
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            fields = json.loads(line[len(_MARK) :])
            fields["step_rss_peaks"] = tuple(fields.get("step_rss_peaks", ()))
            return ProcessMeasurement(**fields)
    raise RuntimeError(
        f"the measuring process failed (exit code {done.returncode}); its last output:\n"
        + (done.stderr or done.stdout)[-2000:]
    )


def _child(request: dict[str, Any]) -> dict[str, Any]:
    from .measure import proc_status_bytes, rss_bytes

    rss0 = rss_bytes()
    import warnings

    import peft  # noqa: F401  (imported before the baseline: every configuration pays it)
    import torch
    import transformers  # noqa: F401

    from .. import models
    from .measure import measure_training_step

    warnings.filterwarnings("ignore")
    rss_start = rss_bytes()
    name, quantization = request.pop("model"), request.pop("quantization")
    steps, device = request.pop("steps"), request.pop("device", "cpu")
    dtype = torch.float32 if quantization is None else None
    model, _ = models.load_model(name, quantization=quantization, dtype=dtype, device=device)
    rss_loaded = rss_bytes()
    hwm = proc_status_bytes("VmHWM") or 0
    live, times, peaks = 0, [], []
    for _ in range(steps):
        step = measure_training_step(model, **request)
        live = max(live, step.peak_bytes)
        hwm = max(hwm, step.memory.rss_peak or 0)
        times.append(step.seconds)
        peaks.append(step.memory.rss_peak or 0)
    del rss0
    malloc = malloc_info()
    return asdict(
        ProcessMeasurement(
            settings={"model": name, "quantization": quantization, **request},
            rss_start=rss_start,
            rss_loaded=rss_loaded,
            live_peak=live,
            rss_peak=hwm,
            step_seconds=min(times),
            step_rss_peaks=tuple(peaks),
            rss_after=step.memory.rss_after or 0,
            live_after=step.memory.end_bytes,
            malloc_free=None if malloc is None else malloc["free"],
        )
    )


def plot_process_memory(rows, ax=None, title: str | None = None):
    """Predicted process memory by part (stacked bars, with its range) and the measured peak RSS.

    rows: {name: (ProcessPrediction, measured peak RSS in bytes or None)}. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    colors = ["#8c8c8c", "#4c72b0", "#dd8452", "#c9b27c", "#937860"]
    names = list(rows)
    for x, name in enumerate(names):
        prediction, measured = rows[name]
        bottom = 0.0
        for (part, size), color in zip(prediction.parts.items(), colors, strict=False):
            ax.bar(x, size / 1e6, bottom=bottom, width=0.55, color=color,
                   label=part if x == 0 else None)  # fmt: skip
            bottom += size / 1e6
        ax.errorbar(x, prediction.predicted / 1e6, color="black", capsize=6,
                    yerr=[[(prediction.predicted - prediction.low) / 1e6],
                          [(prediction.high - prediction.predicted) / 1e6]])  # fmt: skip
        if measured:
            ax.plot([x - 0.35, x + 0.35], [measured / 1e6] * 2, color="tab:red", linewidth=2.5,
                    label="measured peak RSS" if x == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("MB")
    ax.set_title(title or "predicted peak RSS by part (bars, with range) and measured (red)")
    ax.legend(fontsize=7, loc="upper left")
    return ax


def malloc_info() -> dict[str, int] | None:
    """glibc's own account of its heap (``mallinfo2``): bytes in use, free-but-kept, mmapped.

    ``free`` is memory the program has freed that malloc keeps for reuse instead of
    returning it to the OS: it is part of the RSS, but no tensor. None where the C
    library is not glibc 2.33 or newer (macOS, musl, Windows).
    """
    import ctypes

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        libc = ctypes.CDLL(None)
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    info = function()
    return {"in_use": info.uordblks, "free": info.fordblks, "mmapped": info.hblkhd}


if __name__ == "__main__":
    print(_MARK + json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
