"""``python -m helpers.bench``: see ``helpers/bench/cli.py``."""

import sys

from .cli import main

sys.exit(main())
