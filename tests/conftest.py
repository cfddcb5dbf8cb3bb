"""Shared fixtures: the tiny random model (fast) and the bundled data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of the 2-layer random model with SmolLM2's tokenizer."""
    import helpers

    return helpers.load_model("tiny-random-smollm2", device="cpu")


@pytest.fixture(scope="session")
def yoda():
    import helpers

    return helpers.load_dataset("yoda")
