"""The bad-input harness: one ``Case`` per kind of mistake a user makes, and the check each runs.

The rows live next to each package's tests (``tests/<package>/test_bad_input_<package>.py``);
each of those files holds a ``CASES`` list and runs it with two one-line tests::

    @badinput.backend_rows(CASES)
    def test_bad_input_raises_a_named_arrayprop_error(backend, case, tmp_path):
        badinput.check(case, backend, tmp_path)

    @badinput.host_rows(CASES)
    def test_bad_host_input_raises_a_named_arrayprop_error(case, tmp_path):
        badinput.check(case, None, tmp_path)

(a file without ``host_only`` rows has only the first, one with only such rows only the second).
Every backend row runs on every backend of the ``backend`` fixture; ``check`` asserts the exact
documented exception class, that arrayprop itself raised it, and that the message names the
problem. ``tests/test_bad_input.py`` checks the table as a whole (``load_tables``).

The builders below make the bad arguments shared by several packages' rows.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import arrayprop as ap

#: Where arrayprop's own source lives: the last frame of every raised error must be in here.
PACKAGE_DIR = Path(ap.__file__).resolve().parent

#: The glob (under tests/) of the files that hold rows.
TABLE_GLOB = "*/test_bad_input_*.py"


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad call: ``call(be, tmp_path)`` must raise ``exc`` with a message matching ``match``.

    ``id`` is the test id (readable: it names the mistake). ``host_only`` cases do not involve
    a backend and run once, not once per backend (``call`` then gets ``be=None``).
    """

    id: str
    call: Callable[[Any, Path], Any]
    exc: type[BaseException]
    match: str
    host_only: bool = False


def check(case: Case, be: ap.Backend | None, tmp_path: Path) -> None:
    """Run ``case`` on ``be``: the documented class, raised by arrayprop, with a clear message."""
    with pytest.raises(case.exc) as info:
        case.call(be, tmp_path)
    err = info.value
    # Exactly the documented class (pytest.raises would also accept any subclass) ...
    assert type(err) is case.exc, f"{case.id}: {type(err).__name__}: {err}"
    # ... raised by arrayprop itself, not by numpy / torch / array_api_strict deep inside.
    last = info.traceback[-1]
    assert Path(str(last.path)).resolve().is_relative_to(PACKAGE_DIR), (
        f"{case.id}: raised in {last.path}:{last.lineno}: {err}"
    )
    # The message names the problem: the thing, what was expected, what was found.
    assert re.search(case.match, str(err)), f"{case.id}: message {str(err)!r}"


def _rows(cases: list[Case], host_only: bool) -> pytest.MarkDecorator:
    chosen = [c for c in cases if c.host_only is host_only]
    if not chosen:  # an empty parameter set would only skip: say so instead
        kind = "host_only" if host_only else "backend"
        raise ValueError(f"no {kind} rows in this table; drop the test that runs them")
    return pytest.mark.parametrize("case", chosen, ids=lambda c: c.id)


def backend_rows(cases: list[Case]) -> pytest.MarkDecorator:
    """Parametrize a test (which takes ``backend``) over the rows that need a backend."""
    return _rows(cases, host_only=False)


def host_rows(cases: list[Case]) -> pytest.MarkDecorator:
    """Parametrize a test (without ``backend``) over the ``host_only`` rows: run once each."""
    return _rows(cases, host_only=True)


def table_files() -> list[Path]:
    """The files holding rows, ``tests/<package>/test_bad_input_<package>.py``."""
    return sorted(Path(__file__).resolve().parent.glob(TABLE_GLOB))


def load_tables() -> dict[Path, ModuleType]:
    """Each row file's module: the one pytest imported if it has, else a private copy."""
    modules = {}
    for path in table_files():
        module = sys.modules.get(path.stem)
        if module is None or Path(module.__file__ or "").resolve() != path:
            spec = importlib.util.spec_from_file_location(f"_badinput_table_{path.stem}", path)
            assert spec is not None and spec.loader is not None, path
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        modules[path] = module
    return modules


# -- builders of bad arguments shared by several packages' rows ---------------------------------

#: The message of the first layer of ``small_mlp`` given input of the wrong shape.
DENSE_INPUT = r"Dense\(3, 4\): expected input of shape \(\.\.\., 3\)"


def small_mlp(be: ap.Backend, sizes=(3, 4, 2), activation="relu") -> ap.Sequential:
    """A small MLP on ``be`` (3 inputs, 2 outputs by default)."""
    return ap.mlp(list(sizes), activation=activation, seed=0, backend=be)


def ones(be: ap.Backend, shape=(5, 3), dtype=None) -> Any:
    """An array of ones of ``be``'s library (``dtype``: a NumPy dtype, default float64)."""
    return be.asarray(np.ones(shape, dtype=dtype))


def foreign(be: ap.Backend, shape=(5, 3)) -> Any:
    """An array of another array library than ``be``'s."""
    if be.name != "array_api_strict":
        xs = pytest.importorskip("array_api_strict")
        return xs.ones(shape, dtype=xs.float64)
    torch = pytest.importorskip("torch")
    return torch.ones(shape, dtype=torch.float64)


def other_device(be: ap.Backend, shape=(5, 3)) -> Any:
    """An array of ``be``'s library on another device (another library where it has only one)."""
    if be.name == "array_api_strict":
        xs = pytest.importorskip("array_api_strict")
        device = "device1" if str(be.device) != str(xs.Device("device1")) else "device2"
        return xs.ones(shape, dtype=xs.float64, device=xs.Device(device))
    if be.name == "torch":
        import torch

        # The meta device exists in every torch build, so a second device needs no GPU.
        return torch.ones(shape, dtype=torch.float64, device="meta")
    return foreign(be, shape)


def needs_host_check(be: ap.Backend) -> None:
    """Skip unless ``be`` is on the host: label ranges are checked per step only there."""
    if not be.on_host:
        pytest.skip("label ranges are checked per step only where that costs no device sync")
