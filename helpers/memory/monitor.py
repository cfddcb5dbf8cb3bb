"""The live memory monitor: a Trainer callback that shows memory, step and loss while training.

``MemoryMonitor`` subclasses ``transformers.TrainerCallback``, so it inherits a no-op
for every event the Trainer may call (new transformers releases add events) and
passes the Trainer's own checks. That is why this module imports transformers at the
top, and why it is a module of its own: ``helpers.memory`` imports it only when
``MemoryMonitor`` is first used, so importing the package stays instant.

Its widget is built like the calculator's (see ``helpers.memory.widgets``): under
nbval only the panel's ``text/plain`` line at display time is compared, and the cell
that trains with the monitor is tagged ``nbval-ignore-output`` because its numbers
depend on the machine.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from transformers import TrainerCallback

from ..formatting import megabytes
from .measure import proc_status_bytes, reset_peak_rss, rss_bytes
from .panel import escape, new_figure, png, widgets_available


def training_memory(device: str) -> tuple[int | None, int | None, str]:
    """(current, peak, what): GPU tensors on CUDA, the process's RSS elsewhere."""
    if device == "cuda":
        import torch

        return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated(), "GPU tensors"
    peak = proc_status_bytes("VmHWM")
    return rss_bytes(), peak, "process RSS"


class MemoryMonitor(TrainerCallback):
    """A ``transformers.TrainerCallback`` that shows memory, step and loss while training.

    ``monitor = MemoryMonitor(); trainer = build_trainer(..., callbacks=[monitor])``.
    In Jupyter (with ipywidgets) it displays a small panel that updates after every
    step: step, last logged loss, current and peak memory (the process's RSS on a
    CPU, the allocator's tensor bytes on CUDA) and a curve of memory per step.
    Elsewhere it prints one text line per logging step. After training,
    ``monitor.history`` holds one dict per step (step, loss, memory, peak, seconds).
    Arguments: ``every`` (redraw the curve every that many steps, default 5),
    ``widget`` (force the widget on or off; default: when a front end is there) and
    ``stream`` (where the text lines go; default: standard output).
    """

    def __init__(self, every: int = 5, widget: bool | None = None, stream=None):
        self.every = max(1, int(every))
        self.use_widget = widgets_available() if widget is None else bool(widget)
        self.stream = stream
        self.history: list[dict[str, Any]] = []
        self.loss: float | None = None
        self.max_steps = 0
        self.device = "cpu"
        self.what = "process RSS"
        self.peak_rss_reset = False
        self._start = 0.0
        self._panel = None

    # the events the Trainer calls
    def on_train_begin(self, args, state, control, **kwargs):
        model = kwargs.get("model")
        if model is not None:
            try:
                self.device = next(model.parameters()).device.type
            except StopIteration:
                pass
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            self.peak_rss_reset = reset_peak_rss()
        self.max_steps = state.max_steps
        self.history = []
        self.loss = None
        self._start = time.perf_counter()
        _, _, self.what = training_memory(self.device)
        if self.use_widget:
            self._show_panel()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = float(logs["loss"])
            if self.history:
                self.history[-1]["loss"] = self.loss
            if not self.use_widget:
                self._print_line()

    def on_step_end(self, args, state, control, **kwargs):
        current, peak, _ = training_memory(self.device)
        if peak is None or (self.device != "cuda" and not self.peak_rss_reset):
            previous = self.history[-1]["peak"] if self.history else 0
            peak = max(previous or 0, current or 0)
        self.history.append(
            {
                "step": state.global_step,
                "loss": self.loss,
                "memory": current,
                "peak": peak,
                "seconds": time.perf_counter() - self._start,
            }
        )
        if self._panel is not None:
            self._update_panel(redraw=state.global_step % self.every == 0)

    def on_train_end(self, args, state, control, **kwargs):
        if self._panel is not None:
            self._update_panel(redraw=True)

    # text
    def line(self) -> str:
        """The monitor's state in one line of text."""
        if not self.history:
            return "memory monitor: no step yet"
        last = self.history[-1]
        loss = "n/a" if self.loss is None else f"{self.loss:.4f}"
        return (
            f"step {last['step']}/{self.max_steps}  loss {loss}  {self.what} "
            f"{megabytes(last['memory'])} (peak {megabytes(last['peak'])})  "
            f"{last['seconds']:.0f} s"
        )

    def _print_line(self) -> None:
        print(self.line(), file=self.stream or sys.stdout, flush=True)

    @property
    def peak(self) -> int | None:
        """The highest memory seen during training (bytes)."""
        values = [h["peak"] for h in self.history if h["peak"] is not None]
        return max(values) if values else None

    # widget
    def _show_panel(self) -> None:
        import ipywidgets as w
        from IPython.display import display

        self._status = w.HTML(value=f"<b>{escape(self.line())}</b>")
        self._progress = w.IntProgress(value=0, min=0, max=max(self.max_steps, 1))
        self._progress.description = "steps"
        self._image = w.Image(format="png", value=b"")
        self._panel = w.VBox([self._progress, self._status, self._image])
        self._panel.add_class("memory-monitor")
        display(self._panel)

    def _update_panel(self, redraw: bool) -> None:
        self._progress.value = min(self.history[-1]["step"], self._progress.max)
        self._status.value = f"<b>{escape(self.line())}</b>"
        if redraw and self.history:
            self._image.value = self.chartpng()

    def chartpng(self) -> bytes:
        """Memory (and its peak) per step, as PNG bytes."""
        figure = new_figure(5.6, 2.6)
        ax = figure.add_subplot()
        steps = [h["step"] for h in self.history]
        ax.plot(steps, [(h["memory"] or 0) / 1e6 for h in self.history], label="now")
        ax.plot(steps, [(h["peak"] or 0) / 1e6 for h in self.history], "--", label="peak")
        ax.set_xlabel("step")
        ax.set_ylabel(f"{self.what} (MB)")
        ax.legend(fontsize=8, loc="lower right")
        figure.tight_layout()
        return png(figure)
