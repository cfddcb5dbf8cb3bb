"""How the course writes quantities in text and tables (one rule, so they read alike)."""

from __future__ import annotations


def megabytes(nbytes: float | None, digits: int = 0) -> str:
    """'1,234 MB' (decimal megabytes, thousands separated); 'n/a' for an unknown size."""
    return "n/a" if nbytes is None else f"{nbytes / 1e6:,.{digits}f} MB"
