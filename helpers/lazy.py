"""Lazy re-exports: a package names what it offers, and imports a module only when used.

``import helpers`` and ``import helpers.memory`` must stay instant (torch and
transformers take seconds to import), yet offer ``helpers.load_model`` and
``memory.MemoryMonitor``. A package passes its table to :func:`lazy_exports` and
binds the two functions it returns as its module-level ``__getattr__`` and ``__dir__``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) for `package`, from ``{name: "module"}``.

    A value ``"module:attribute"`` exports the module's attribute under another name.
    """

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        return getattr(importlib.import_module(f".{module}", package), attribute or name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
