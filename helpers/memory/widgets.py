"""Two memory widgets: a calculator for the estimator, and a live monitor for training.

The monitor lives in ``helpers.memory.monitor`` (it subclasses transformers'
``TrainerCallback``); ``helpers.memory.MemoryMonitor`` is the name to use. What both draw
with is in ``helpers.memory.panel``.

Both are built from ipywidgets' core controls only (sliders, dropdowns, a checkbox,
an HTML line and an Image), which JupyterLab and Colab render without extensions.
Where there is no widget front end (a plain ``python`` process, a terminal IPython)
or ipywidgets is not installed, both fall back to plain text: the calculator prints
its table, the monitor prints one line per logging step.

Under nbval: a widget's output is stored as two parts, the widget view (a model id
that changes on every run; nbval 0.11 skips that key) and a ``text/plain`` line that
nbval compares. The calculator's text line is a summary of its settings and
prediction, the same on every machine. Its picture is the value of an ``Image``
widget, sent to the browser as widget state, not as a cell output, so nothing
machine-dependent lands in the stored outputs. The monitor's numbers depend on the
machine, so the cell that trains with it is tagged ``nbval-ignore-output``.

Stable labels of the calculator's controls (their ``description``), for people and
for browser tests; each control also carries the CSS class
``memory-calculator-<key>`` and the whole widget ``memory-calculator``:

========================  =====================  ==================================
key                        description            values
========================  =====================  ==================================
batch_size                 "batch size"           1, 2, 4, ..., 64
seq_len                    "sequence length"      32, 64, ..., 4096
dtype                      "weights dtype"        fp32, bf16, fp16
quantization               "quantization"         none, 8bit, 4bit
method                     "fine-tuning"          full, LoRA
lora_rank                  "LoRA rank"            4, 8, ..., 128
gradient_checkpointing     "gradient checkpointing"  on / off
mixed_precision            "mixed precision"      none, bf16, fp16
attn_implementation        "attention"            sdpa, eager
optimizer                  "optimizer"            adamw, sgd
device                     "device"               cpu (RAM), cuda (GPU memory)
budget_gb                  "memory (GB)"          0.5 to 1024
========================  =====================  ==================================

The verdict compares the budget with the predicted memory of the whole process, not the
live tensors: the peak RSS on the CPU, reserved GPU memory plus the CUDA context on CUDA
(``MemoryEstimate.process_memory``), and says so.

The picture is the ``Image`` with class ``memory-calculator-chart``; the verdict line
("fits in 8 GB: yes") is the HTML with class ``memory-calculator-verdict``.
"""

from __future__ import annotations

from typing import Any

from .estimate import MemoryEstimate, estimate_training_memory
from .panel import escape, new_figure, png, widgets_available

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
SEQ_LENS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
LORA_RANKS = (4, 8, 16, 32, 64, 128)

LABELS = {
    "batch_size": "batch size",
    "seq_len": "sequence length",
    "dtype": "weights dtype",
    "quantization": "quantization",
    "method": "fine-tuning",
    "lora_rank": "LoRA rank",
    "gradient_checkpointing": "gradient checkpointing",
    "mixed_precision": "mixed precision",
    "attn_implementation": "attention",
    "optimizer": "optimizer",
    "device": "device",
    "budget_gb": "memory (GB)",
}
"""The calculator's control labels (stable: browser tests and the chapter rely on them)."""


# --- the calculator ------------------------------------------------------------------------


class MemoryCalculator:
    """The estimator with controls: change a setting, see the predicted peak and its parts.

    ``MemoryCalculator(model_or_config, budget_gb=8)`` displays as a widget in Jupyter
    and as text elsewhere. ``set(batch_size=16, ...)`` changes settings from code (the
    widget's controls follow); ``estimate`` is the current :class:`MemoryEstimate` (None
    when the settings make no sense, for example full fine-tuning of 4-bit weights,
    and ``message`` says why); ``summary()`` is the one-line text the notebook stores.
    """

    def __init__(
        self,
        model_or_config: Any = "smollm2-135m-instruct",
        *,
        budget_gb: float = 8.0,
        batch_size: int = 8,
        seq_len: int = 128,
        dtype: str = "fp32",
        quantization: str | None = None,
        lora_rank: int | None = 16,
        gradient_checkpointing: bool = False,
        mixed_precision: str | None = None,
        attn_implementation: str = "sdpa",
        optimizer: str = "adamw",
        device: str = "cpu",
    ):
        self.model_or_config = model_or_config
        self.settings: dict[str, Any] = {
            "batch_size": batch_size,
            "seq_len": seq_len,
            "dtype": dtype,
            "quantization": quantization,
            "method": "full" if lora_rank is None else "LoRA",
            "lora_rank": lora_rank or 16,
            "gradient_checkpointing": gradient_checkpointing,
            "mixed_precision": mixed_precision,
            "attn_implementation": attn_implementation,
            "optimizer": optimizer,
            "device": device,
            "budget_gb": float(budget_gb),
        }
        self.estimate: MemoryEstimate | None = None
        self.message = ""
        self.controls: dict[str, Any] = {}
        self.widget = None
        self._updates = 0
        self._recompute()
        if widgets_available():
            self._build_widget()

    # settings -> estimate
    def _recompute(self) -> None:
        s = self.settings
        try:
            self.estimate = estimate_training_memory(
                self.model_or_config,
                batch_size=s["batch_size"],
                seq_len=s["seq_len"],
                dtype=s["dtype"],
                quantization=s["quantization"],
                lora_rank=None if s["method"] == "full" else s["lora_rank"],
                optimizer=s["optimizer"],
                gradient_checkpointing=s["gradient_checkpointing"],
                mixed_precision=s["mixed_precision"],
                attn_implementation=s["attn_implementation"],
            )
            self.message = ""
        except ValueError as err:
            self.estimate = None
            self.message = str(err)

    def set(self, **changes: Any) -> MemoryCalculator:
        """Change settings (keys as in ``LABELS``) and recompute; returns self."""
        unknown = set(changes) - set(self.settings)
        if unknown:
            raise KeyError(f"unknown settings {sorted(unknown)}; known: {sorted(self.settings)}")
        self.settings.update(changes)
        if self.widget is not None:
            for key, value in changes.items():
                self.controls[key].value = _to_control(key, value)
        self._recompute()
        self._refresh()
        return self

    @property
    def process(self):
        """The predicted process memory (RSS or GPU memory) of the current settings, or None."""
        if self.estimate is None:
            return None
        return self.estimate.process_memory(self.settings["device"])

    def fits(self) -> bool:
        """Whether the predicted process memory fits the budget (False without an estimate)."""
        return self.process is not None and self.process.fits(self.settings["budget_gb"])

    def verdict(self) -> str:
        """'fits in 8 GB: yes (predicted peak RSS ...; live tensors ...)', or why not known.

        The answer compares the budget with the predicted memory of the process, which is
        what an out-of-memory kill or error depends on; the live tensors are shown beside it.
        """
        budget = self.settings["budget_gb"]
        if self.estimate is None:
            return f"no estimate: {self.message}"
        answer = "yes" if self.fits() else "no"
        return (
            f"fits in {budget:g} GB: {answer} ({self.process.short()}; "
            f"live tensors {self.estimate.total / 1e9:.2f} GB)"
        )

    def summary(self) -> str:
        """One line: the settings and the verdict (what the notebook stores as text)."""
        s = self.settings
        method = "full" if s["method"] == "full" else f"LoRA r={s['lora_rank']}"
        return (
            f"MemoryCalculator(batch {s['batch_size']} x {s['seq_len']}, {s['dtype']}, "
            f"quantization {s['quantization'] or 'none'}, {method}, "
            f"checkpointing {'on' if s['gradient_checkpointing'] else 'off'}, "
            f"mixed precision {s['mixed_precision'] or 'none'}, {s['attn_implementation']}, "
            f"{s['optimizer']}, {s['device']}; {self.verdict()})"
        )

    def text(self) -> str:
        """The full text version: summary, then the estimate's table."""
        body = self.message
        if self.estimate is not None:
            body = f"{self.estimate.table()}\n{self.process}"
        return f"{self.summary()}\n{body}"

    def __repr__(self) -> str:
        return self.summary()

    def __str__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.widget is None:
            return {"text/plain": self.text()}
        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = self.summary()
        return bundle

    def chartpng(self) -> bytes:
        """The stacked-bar picture of the current estimate, as PNG bytes."""
        figure = new_figure(5.6, 3.4)
        ax = figure.add_subplot()
        if self.estimate is None:
            ax.text(0.5, 0.5, "no estimate for these settings", ha="center", va="center")
            ax.set_axis_off()
        else:
            self.estimate.plot(ax)
            process = self.process
            ax.axhspan(process.low / 1e6, process.high / 1e6, color="tab:purple", alpha=0.15)
            ax.axhline(
                process.predicted / 1e6,
                color="tab:purple",
                linewidth=1.5,
                label=process.label.removeprefix("predicted "),
            )
            ax.axhline(
                self.settings["budget_gb"] * 1e3,
                color="tab:red",
                linestyle=":",
                linewidth=1.5,
                label="budget",
            )
            ax.legend(fontsize=7, loc="upper right")
            top = max(process.high, self.settings["budget_gb"] * 1e9) / 1e6
            ax.set_ylim(0, top * 1.12)
        figure.tight_layout()
        return png(figure)

    # the widget
    def _build_widget(self) -> None:
        import ipywidgets as w

        s = self.settings
        style = {"description_width": "150px"}
        layout = w.Layout(width="360px")
        c = {
            "batch_size": w.SelectionSlider(options=BATCH_SIZES, value=s["batch_size"]),
            "seq_len": w.SelectionSlider(options=SEQ_LENS, value=s["seq_len"]),
            "dtype": w.Dropdown(options=["fp32", "bf16", "fp16"], value=s["dtype"]),
            "quantization": w.Dropdown(
                options=["none", "8bit", "4bit"], value=s["quantization"] or "none"
            ),
            "method": w.Dropdown(options=["full", "LoRA"], value=s["method"]),
            "lora_rank": w.SelectionSlider(options=LORA_RANKS, value=s["lora_rank"]),
            "gradient_checkpointing": w.Checkbox(value=s["gradient_checkpointing"], indent=False),
            "mixed_precision": w.Dropdown(
                options=["none", "bf16", "fp16"], value=s["mixed_precision"] or "none"
            ),
            "attn_implementation": w.Dropdown(
                options=["sdpa", "eager"], value=s["attn_implementation"]
            ),
            "optimizer": w.Dropdown(options=["adamw", "sgd"], value=s["optimizer"]),
            "device": w.Dropdown(options=["cpu", "cuda"], value=s["device"]),
            "budget_gb": w.BoundedFloatText(value=s["budget_gb"], min=0.5, max=1024, step=0.5),
        }
        for key, control in c.items():
            control.description = LABELS[key]
            control.style = style
            control.layout = layout
            control.add_class(f"memory-calculator-{key.replace('_', '-')}")
            control.observe(self._on_change(key), names="value")
        self.controls = c
        self._image = w.Image(format="png", value=self.chartpng())
        self._image.add_class("memory-calculator-chart")
        self._verdict = w.HTML(value=self._verdict_html())
        self._verdict.add_class("memory-calculator-verdict")
        self._table = w.HTML(value=self._table_html())
        self._table.add_class("memory-calculator-table")
        panel = w.VBox(list(c.values()))
        self.widget = w.VBox(
            [w.HBox([panel, self._image]), self._verdict, self._table],
        )
        self.widget.add_class("memory-calculator")
        c["lora_rank"].disabled = s["method"] == "full"

    def _on_change(self, key: str):
        def handler(change):
            value = _from_control(key, change["new"])
            if self.settings.get(key) == value:
                return
            self.settings[key] = value
            if key == "method":
                self.controls["lora_rank"].disabled = value == "full"
            self._recompute()
            self._refresh()

        return handler

    def _refresh(self) -> None:
        self._updates += 1
        if self.widget is None:
            return
        self._image.value = self.chartpng()
        self._verdict.value = self._verdict_html()
        self._table.value = self._table_html()

    def _verdict_html(self) -> str:
        ok = self.fits()
        color = "#2a7a2a" if ok else "#b22222"
        return f"<b style='color:{color}'>{escape(self.verdict())}</b>"

    def _table_html(self) -> str:
        body = self.message
        if self.estimate is not None:
            body = f"{self.estimate.table()}\n{self.process}"
        return f"<pre style='font-size:12px;line-height:1.25'>{escape(body)}</pre>"


def _to_control(key: str, value: Any) -> Any:
    if key in {"quantization", "mixed_precision"} and value is None:
        return "none"
    return value


def _from_control(key: str, value: Any) -> Any:
    if key in {"quantization", "mixed_precision"} and value == "none":
        return None
    return value


def memory_calculator(model_or_config: Any = "smollm2-135m-instruct", **settings: Any):
    """A :class:`MemoryCalculator` (a widget in Jupyter, text elsewhere)."""
    return MemoryCalculator(model_or_config, **settings)
