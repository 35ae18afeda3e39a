"""The bad-input table as a whole: bad input gives a clear arrayprop exception, everywhere.

The table lists one case per kind of mistake a user makes (wrong shape, integer data, a dtype the
backend lacks, an array of another library or device, bad labels, empty data, non-positive
hyperparameters, unknown names ...). Its rows live next to each package's tests
(``tests/<package>/test_bad_input_<package>.py``) and run with the shared harness in
tests/badinput.py. This file checks what no single package's rows can: that the table covers
every arrayprop exception class, that row ids are unique, and that every row is run.
"""

from __future__ import annotations

import inspect

import badinput
from arrayprop.errors import (
    BackendMismatchError,
    BackendUnavailableError,
    CheckpointError,
    DataError,
    DTypeError,
    LabelError,
    NonFiniteError,
    ShapeError,
)


def _all_cases() -> list[badinput.Case]:
    tables = badinput.load_tables()
    assert len(tables) >= 6, f"expected the rows of six packages, found {list(tables)}"
    return [case for module in tables.values() for case in module.CASES]


def test_every_exception_class_is_covered_by_the_table():
    used = {c.exc for c in _all_cases()}
    for cls in (
        ShapeError,
        DTypeError,
        BackendMismatchError,
        BackendUnavailableError,
        LabelError,
        NonFiniteError,
        DataError,
        CheckpointError,
    ):
        assert cls in used, cls.__name__


def test_row_ids_are_unique_across_the_table():
    seen: dict[str, int] = {}
    for case in _all_cases():
        seen[case.id] = seen.get(case.id, 0) + 1
    assert not [i for i, n in seen.items() if n > 1], sorted(i for i, n in seen.items() if n > 1)


def test_every_row_is_run_by_its_files_tests():
    """Each row file parametrizes its tests over all of its rows: backend rows on a test that
    takes ``backend``, host_only rows on one that does not (so they run once)."""
    problems = []
    for path, module in badinput.load_tables().items():
        run: dict[str, set[int]] = {"backend": set(), "host": set()}
        for name, fn in vars(module).items():
            if not (name.startswith("test_") and callable(fn)):
                continue
            kind = "backend" if "backend" in inspect.signature(fn).parameters else "host"
            for mark in getattr(fn, "pytestmark", []):
                if mark.name == "parametrize" and mark.args[0] == "case":
                    run[kind] |= {id(case) for case in mark.args[1]}
        for case in module.CASES:
            kind = "host" if case.host_only else "backend"
            if id(case) not in run[kind]:
                problems.append(f"{path.name}: {case.id} ({kind} row) is not run")
    assert not problems, "\n".join(problems)
