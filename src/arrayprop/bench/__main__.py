"""``python -m arrayprop.bench``: the ``arrayprop bench`` command without the CLI entry point."""

import sys

from arrayprop.bench.cli import main

sys.exit(main())
