"""Environment switches, read one way everywhere.

``HF_HUB_OFFLINE=true`` must mean the same as ``HF_HUB_OFFLINE=1``, and
``COURSE_SLOW_TESTS=0`` must mean off: a switch that is on for any non-empty
value turns on when someone writes ``=0``. :func:`flag` is the one reader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ON = frozenset({"1", "true", "yes", "on"})
OFF = frozenset({"0", "false", "no", "off", ""})


def parse_flag(name: str, value: str | None, default: bool = False) -> bool:
    """True for 1/true/yes/on, False for 0/false/no/off/'' (any case, spaces ignored);
    `default` when unset. Anything else is a mistake worth naming, not a guess."""
    if value is None:
        return default
    word = value.strip().lower()
    if word in ON:
        return True
    if word in OFF:
        return False
    raise ValueError(
        f"{name}={value!r} is neither on nor off: set it to 1, true, yes or on to turn it on, "
        "or to 0, false, no, off or nothing to turn it off"
    )


def flag(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """Is the environment switch `name` on? (see :func:`parse_flag`)"""
    environ = os.environ if environ is None else environ
    return parse_flag(name, environ.get(name), default)
