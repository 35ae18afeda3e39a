"""``python -m arrayprop``: the same command line as the ``arrayprop`` script."""

from .cli import main

raise SystemExit(main())
