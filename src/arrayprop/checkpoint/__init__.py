"""Checkpoints: a JSON header and NumPy arrays in one checksummed file, written atomically and
loaded without pickle (see docs/training.md#checkpoints).

:mod:`.format` holds the layout (constants, header encoding, checksum), :mod:`.write` saves and
:mod:`.read` loads.
"""

from arrayprop.checkpoint.format import FORMAT_NAME, FORMAT_VERSION
from arrayprop.checkpoint.read import Checkpoint, load, restore_optimizer
from arrayprop.checkpoint.write import save

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Checkpoint", "load", "restore_optimizer", "save"]
