"""``python -m tools.bench``: see ``tools/bench/cli.py``."""

import sys

from .cli import main

sys.exit(main())
