"""Library log messages, shown once: the course's only change to how libraries log.

In the base layer, because loading a model (``helpers.models``) applies it.
"""

from __future__ import annotations

import logging


class FirstTimeOnly(logging.Filter):
    """Let each distinct message through once; drop its repeats."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def log_once(logger_name: str = "bitsandbytes.autograd._functions") -> None:
    """Show each warning of a library's logger once per session instead of on every call.

    bitsandbytes' 8-bit layers log "MatMul8bitLt: inputs will be cast from torch.float32 to
    float16 during quantization" on *every* forward pass of *every* layer when the inputs
    are not fp16 (on a CPU they are fp32): 210 identical lines per forward pass of SmolLM2.
    The first one is information (chapter 02 explains it); the repeats are noise, so
    ``helpers.load_model(..., "8bit")`` calls this. Calling it twice adds no second filter.
    """
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, FirstTimeOnly) for f in logger.filters):
        logger.addFilter(FirstTimeOnly())
