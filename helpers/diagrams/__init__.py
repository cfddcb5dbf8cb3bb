"""Conceptual diagrams drawn by code, so that they re-render identically everywhere.

One module per picture family; each function returns a matplotlib ``Figure`` (the
notebooks call ``plt.show()``), draws only from numbers it is given or computes
from the real model's config, and uses no randomness.
"""
