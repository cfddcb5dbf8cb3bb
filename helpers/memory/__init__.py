"""Memory of training, estimated and measured (chapter 05).

- ``estimate``: :func:`estimate_training_memory` predicts the peak of one training step
  and its parts (weights, gradients, optimizer states, activations), before running it.
- ``estimate`` also predicts what the operating system sees: ``estimate.process_memory()``
  (:func:`predict_process_memory`) adds the runtime and the allocator's kept memory to the
  live tensors (the peak RSS on a CPU; reserved memory and the CUDA context on CUDA).
- ``process``: :func:`measure_in_fresh_process` runs a configuration in a new interpreter
  and measures its peak RSS beside its live tensors.
- ``measure``: :func:`measure_peak_memory`, :class:`MemoryTracker` and
  :func:`measure_training_step` measure the same quantity (live tensor bytes) on the
  CPU or a GPU, and the process's RSS.
- ``widgets``: :class:`MemoryCalculator` (the estimator with controls), and
  ``monitor``: :class:`MemoryMonitor` (a Trainer callback showing memory while
  training); both fall back to text without ipywidgets or without a notebook.
- ``oom``: :func:`explain_oom` turns an out-of-memory error into ranked advice.

Imports are lazy: ``import helpers.memory`` loads nothing heavy until a name is used.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "estimate_training_memory": "estimate",
    "MemoryEstimate": "estimate",
    "Shape": "estimate",
    "quantized_bytes": "estimate",
    "predict_process_memory": "estimate",
    "ProcessPrediction": "estimate",
    "measure_in_fresh_process": "process",
    "ProcessMeasurement": "process",
    "malloc_info": "process",
    "plot_process_memory": "process",
    "measure_peak_memory": "measure",
    "measure_training_step": "measure",
    "MemoryTracker": "measure",
    "LiveTensorTracker": "measure",
    "PeakMemory": "measure",
    "StepMemory": "measure",
    "tensor_bytes": "measure",
    "rss_bytes": "measure",
    "attention_support": "measure",
    "MemoryCalculator": "widgets",
    "memory_calculator": "widgets",
    "MemoryMonitor": "monitor",
    "widgets_available": "panel",
    "LABELS": "widgets",
    "explain_oom": "oom",
    "advise": "oom",
    "is_out_of_memory": "oom",
    "TrainingOutOfMemory": "oom",
    "Advice": "oom",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
