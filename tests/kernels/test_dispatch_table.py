"""Every name :mod:`arrayprop.kernels` calls on a fast module exists in each fast module.

The dispatcher calls ``fast.X(...)`` on whatever module a backend names as its ``fast`` module
(:attr:`Backend.fast <arrayprop.Backend.fast>`). A name missing from one of them is an
AttributeError on that backend only, at run time: CuPy's ``bias_grad`` was missing that way and
every CuPy training step crashed, with nothing in CI to see it. This test reads the dispatcher's
source, collects each ``fast.X`` it uses unguarded (not behind ``hasattr(fast, "X")`` or
``getattr(fast, "X", default)``), and checks that every fast module, CuPy's loaded on the
stand-in ``cupy`` of tests/cupy_standin.py, defines it.
"""

from __future__ import annotations

import ast
import inspect

import pytest

import arrayprop as ap
from arrayprop import kernels
from arrayprop.backends import ADAPTERS
from cupy_standin import import_cupy_fast, restoring_cupy_fast

#: Backends with a fast module (the adapters say which).
FAST_BACKENDS = sorted(name for name, cls in ADAPTERS.items() if cls.fast_module)


def _fast_source(fn: ast.FunctionDef) -> str | None:
    """Which fast module ``fast`` is in ``fn``: "any" for ``fast = _fast(backend)``, a backend
    name for ``fast = get_backend("<name>").fast``, None when ``fn`` has no ``fast``."""
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Name) and target.id == "fast"):
            continue
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "_fast":
            return "any"
        if (
            isinstance(value, ast.Attribute)
            and value.attr == "fast"
            and isinstance(value.value, ast.Call)
            and getattr(value.value.func, "id", None) == "get_backend"
        ):
            return value.value.args[0].value
        raise AssertionError(f"{fn.name}: unrecognised 'fast = {ast.unparse(value)}'")
    return None


def _guarded(fn: ast.FunctionDef) -> set[str]:
    """Names behind ``hasattr(fast, "X")`` or ``getattr(fast, "X", default)`` in ``fn``."""
    out = set()
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) in ("hasattr", "getattr")
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "fast"
            and (node.func.id == "hasattr" or len(node.args) == 3)
        ):
            out.add(node.args[1].value)
    return out


def dispatch_table() -> dict[str, tuple[str, set[str]]]:
    """Per dispatcher function: (which fast module, the names it uses unguarded)."""
    tree = ast.parse(inspect.getsource(kernels))
    table = {}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef):
            continue
        source = _fast_source(fn)
        if source is None:
            continue
        used = {
            node.attr
            for node in ast.walk(fn)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "fast"
        }
        table[fn.name] = (source, used - _guarded(fn))
    return table


@pytest.fixture
def fast_modules(monkeypatch):
    """{backend name: its fast module}; CuPy's imported on the stand-in cupy."""
    with restoring_cupy_fast():
        modules = {}
        for name in FAST_BACKENDS:
            if name == "cupy":
                modules[name] = import_cupy_fast(monkeypatch)
            else:
                modules[name] = ap.get_backend(name).fast
                assert modules[name] is not None, f"{name}'s fast module does not import"
        yield modules


def test_the_table_is_read_from_the_dispatcher():
    table = dispatch_table()
    # A few entries that must be there, so that a change of style cannot empty the check.
    assert table["linear"] == ("any", {"linear"})
    assert table["bias_grad"] == ("any", {"bias_grad"})
    assert table["softmax_cross_entropy"] == ("any", set())  # guarded by hasattr
    assert table["fused_sgd"] == ("any", set())  # getattr with a default
    assert table["fused_sgd_status"][0] == "numpy"
    assert FAST_BACKENDS == ["cupy", "numpy", "torch"]


def test_every_unguarded_fast_call_exists_in_every_fast_module(fast_modules):
    missing = [
        f"{backend}: {module.__name__}.{name} (called by kernels.{fn})"
        for fn, (source, names) in sorted(dispatch_table().items())
        for backend, module in fast_modules.items()
        if source in ("any", backend)
        for name in sorted(names)
        if not callable(getattr(module, name, None))
    ]
    assert not missing, "fast modules lack names the dispatcher calls:\n" + "\n".join(missing)


def test_the_check_finds_a_missing_name(fast_modules, monkeypatch):
    # The planted fault: CuPy's module as it was before it had bias_grad.
    monkeypatch.delattr(fast_modules["cupy"], "bias_grad", raising=False)
    with pytest.raises(AssertionError, match=r"cupy: .*\.bias_grad \(called by kernels.bias_grad"):
        test_every_unguarded_fast_call_exists_in_every_fast_module(fast_modules)
