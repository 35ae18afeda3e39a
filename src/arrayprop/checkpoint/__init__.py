"""Checkpoints: a JSON header and NumPy arrays in one checksummed file, written atomically and
loaded without pickle (see docs/training.md#checkpoints)."""

from arrayprop.checkpoint.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Checkpoint,
    load,
    restore_optimizer,
    save,
)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Checkpoint", "load", "restore_optimizer", "save"]
