"""The training modules stay portable: no NumPy, torch or CuPy, no host read of the loss."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "module", ["training.api", "training.args", "training.feed", "training.loop", "training.resume"]
)
def test_train_module_is_portable(module):
    import importlib
    import inspect

    source = inspect.getsource(importlib.import_module(f"arrayprop.{module}"))
    for name in ("import numpy", "import torch", "import cupy", "np.", "float(loss"):
        assert name not in source
