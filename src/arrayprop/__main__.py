"""``python -m arrayprop``: the same command line as the ``arrayprop`` script."""

from arrayprop.cli import main

raise SystemExit(main())
