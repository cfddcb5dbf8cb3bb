"""Shortcut: ``python -m helpers.regrade`` is ``python -m helpers.grading.regrade``.

Not a sandbox: the submission's code runs with your permissions (see helpers/grading/regrade.py).
"""

from __future__ import annotations

import sys

from .grading.regrade import main

if __name__ == "__main__":
    sys.exit(main())
