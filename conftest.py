"""Markers applied to every collected test, unit tests and nbval cells of the chapters alike
(so that no test file has to carry them): ``real_model`` on what loads the real model, and the
``slow`` tests skipped unless ``COURSE_SLOW_TESTS`` is on. Fixtures are in tests/conftest.py."""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
from pathlib import Path

import pytest

from helpers import env

# The course never downloads at run time; notebook kernels inherit these.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REAL_MODEL = "smollm2-135m-instruct"
"""The real pretrained model (helpers.models.DEFAULT_MODEL; not imported here, so that
collecting the tests does not import torch)."""

_LOADS_REAL_MODEL = re.compile(
    r"(?:load_model|prepare_model|from_pretrained)\(\s*"
    r"(?:[\"']" + re.escape(REAL_MODEL) + r"[\"']|(?:models\.)?DEFAULT_MODEL\b|\)|\w+\s*=)"
)
"""A call that loads (or converts) the real model's weights: by name, as DEFAULT_MODEL, or by
default (``load_model()``, ``load_model(dtype=...)``); the tiny model is named, so it never
matches."""


def loads_real_model(source: str) -> bool:
    return bool(_LOADS_REAL_MODEL.search(source))


@functools.cache
def _notebook_loads_real_model(path: Path) -> bool:
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    code = ["".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]
    return loads_real_model("\n".join(code))


def _source(item) -> str:
    function = getattr(item, "function", None)
    if function is None:
        return ""
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def needs_real_model(item) -> bool:
    """Does this test load SmolLM2-135M-Instruct? Through the ``real_model`` fixture, a
    load in its own source, or (an nbval cell) a notebook that loads it."""
    if "real_model" in getattr(item, "fixturenames", ()):
        return True
    path = Path(str(item.path))
    if path.suffix == ".ipynb":
        return _notebook_loads_real_model(path)
    return loads_real_model(_source(item))


def pytest_collection_modifyitems(config, items):
    slow = env.flag("COURSE_SLOW_TESTS")
    for item in items:
        if needs_real_model(item):
            item.add_marker(pytest.mark.real_model)
        if item.get_closest_marker("slow") and not slow:
            item.add_marker(
                pytest.mark.skip(reason="slow (minutes): set COURSE_SLOW_TESTS=1 to run it")
            )
