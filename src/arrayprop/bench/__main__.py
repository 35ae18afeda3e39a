"""``python -m arrayprop.bench``: the ``arrayprop bench`` command without the CLI entry point."""

import sys

from . import main

sys.exit(main())
