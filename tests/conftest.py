"""Shared fixtures: the tiny random model (fast), the real one, and the bundled data.
The markers (``real_model``, ``slow``) are applied by the conftest.py at the root."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the 2-layer random model with SmolLM2's tokenizer."""
    import helpers

    return helpers.load_model("tiny-random-smollm2", device="cpu")


@pytest.fixture(scope="session")
def real_model():
    """(model, tokenizer) of the real SmolLM2-135M-Instruct in fp32 on the CPU; a test that
    asks for it is marked ``real_model``."""
    import torch

    from helpers import models

    return models.load_model(models.DEFAULT_MODEL, dtype=torch.float32, device="cpu")


@pytest.fixture(scope="session")
def yoda():
    import helpers

    return helpers.load_dataset("yoda")
