"""The package's import structure, read from arrayprop's source files (ast), and each module
imported alone.

- no import cycle between arrayprop's modules, counting function-local imports too;
- every module imports on its own, in a fresh ``sys.modules`` (one subprocess for all);
- no module imports a private name (``_x``) of another arrayprop module;
- only backends/ and bench/ import the optional array libraries (cupy, torch, jax,
  array_api_strict);
- nn/, optim/ and training/ are written against the Array API alone (no NumPy, CuPy or torch
  calls, no ``out=``, no host read of a loss with ``float(loss...)``); this replaces the
  per-module source checks of the old tests/training/test_train.py;
- each module imports only its own unit and the units of lower layers (:data:`LAYERS`, the
  table docs/architecture.md explains).

How an import statement becomes an edge of the graph (``_edge``, ``_graph``):

- ``import a.b.c``: an edge to ``a.b.c`` (the longest prefix of it that is an arrayprop module);
- ``from P import n``: an edge to the module ``P.n`` when ``n`` is a submodule of ``P``, else to
  ``P``; relative imports are resolved against the importing module's package;
- ``importlib.import_module("<literal>")``: as ``import <literal>`` (names built at run time
  cannot be read from the source and are left out);
- imports under ``if TYPE_CHECKING:`` never run and are left out;
- the implicit import of the parent packages of ``a.b.c`` is not an edge: otherwise every
  ``from arrayprop.errors import ...`` would close a cycle through ``arrayprop/__init__.py``,
  which re-exports the public names.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import io
import itertools
import json
import os
import subprocess
import sys
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

import arrayprop

PACKAGE_DIR = Path(arrayprop.__file__).resolve().parent
ROOT = "arrayprop"

#: Optional array libraries: only modules under these subpackages may import them.
ARRAY_LIBRARIES = ("cupy", "torch", "jax", "array_api_strict")
LIBRARY_PACKAGES = ("arrayprop.backends", "arrayprop.bench")
#: Other optional libraries that one subpackage alone may import: library -> that subpackage.
#: mpi4py starts MPI when imported: arrayprop.distributed alone imports it, and only when a
#: distributed run asks for it (the NCCL transport, which imports CuPy, is in backends/cupy/).
CONFINED_LIBRARIES = {"sklearn": "arrayprop.sklearn", "mpi4py": "arrayprop.distributed"}

#: Libraries a module may need that need not be installed (the ``[cuda]``, test, bench, plot,
#: sklearn and mpi extras); a module whose import fails because one of these is missing is
#: skipped.
OPTIONAL_LIBRARIES = (*ARRAY_LIBRARIES, *CONFINED_LIBRARIES, "matplotlib", "threadpoolctl")

#: Subpackages written against the Array API alone.
PORTABLE_PACKAGES = ("nn", "optim", "training")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: Every module of the package: dotted name -> source file.
MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@dataclasses.dataclass(frozen=True)
class Import:
    """One name an import statement binds: ``target`` module, ``name`` taken from it (None for
    ``import target``), where it is and whether it runs only when a function is called."""

    importer: str
    target: str  # the full dotted name as written (resolved if relative)
    name: str | None
    lineno: int
    local: bool
    alias: str | None = None  # the ``as`` name, if any

    def where(self) -> str:
        scope = "function-local" if self.local else "module-level"
        return f"{self.importer}:{self.lineno} ({scope})"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if not level:
        return target or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    base = package.split(".")
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join([*base, target] if target else base)


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))


def _imports(module: str, source: str | None = None) -> Iterator[Import]:
    """Every import in ``module``'s source, at any depth, except under ``if TYPE_CHECKING:``."""
    tree = _tree(module) if source is None else ast.parse(source)

    def visit(node: ast.AST, local: bool) -> Iterator[Import]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from visit(child, local)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, None, node.lineno, local, alias.asname)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node.level, node.module)
            for alias in node.names:
                yield Import(module, target, alias.name, node.lineno, local, alias.asname)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(module, node.args[0].value, None, node.lineno, local)
        inner = local or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, False)


def _arrayprop_module(dotted: str) -> str | None:
    """The longest prefix of ``dotted`` that is a module of the package, if any."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in MODULES:
            return prefix
    return None


def _edge(imp: Import) -> str | None:
    """The arrayprop module ``imp`` makes its importer depend on (None: outside the package)."""
    if imp.name is not None and imp.name != "*" and f"{imp.target}.{imp.name}" in MODULES:
        return f"{imp.target}.{imp.name}"
    return _arrayprop_module(imp.target) if _in(imp.target, ROOT) else None


def _graph() -> dict[str, dict[str, Import]]:
    """module -> {module it imports: the first (module-level if any) import that does}."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for module in MODULES:
        for imp in _imports(module):
            target = _edge(imp)
            known = graph[module].get(target)
            if target is not None and (known is None or (known.local and not imp.local)):
                graph[module][target] = imp  # a module-level import rather than a local one
    return graph


def _cycles(graph: dict[str, dict[str, Import]]) -> list[tuple[list[str], list[str]]]:
    """(members, one closed path through them) for each strongly connected component of more
    than one module, or of one module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm (the graph has ~60 nodes: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # breadth-first search inside the component for the shortest way back to start
        paths = {w: [start, w] for w in graph[start] if w in members}
        frontier = list(paths)
        while start not in paths:
            nxt = []
            for v in frontier:
                for w in graph[v]:
                    if w in members and w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
            frontier = nxt
        cycles.append((component, paths[start]))
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, Import]]) -> str:
    steps = [f"  {a} -> {b}    [{graph[a][b].where()}]" for a, b in itertools.pairwise(cycle)]
    return " -> ".join(cycle) + "\n" + "\n".join(steps)


# -- (a) no cycles --------------------------------------------------------------------------------


def test_the_graph_is_read_from_the_source():
    """The reader sees the package's real structure (else an empty graph would pass)."""
    graph = _graph()
    assert len(MODULES) > 30
    assert "arrayprop.nn.dense" in graph["arrayprop.nn"]  # the package face re-exports
    assert "arrayprop.errors" in graph["arrayprop.nn.dense"]
    assert sum(len(targets) for targets in graph.values()) > 100


def test_cycle_finder_finds_a_cycle():
    """The finder itself: a -> b -> c -> a is reported, the tail d -> a is not part of it."""
    stub = {name: Import(name, "x", None, 1, False) for name in "abcd"}
    graph = {
        "a": {"b": stub["a"]},
        "b": {"c": stub["b"]},
        "c": {"a": stub["c"]},
        "d": {"a": stub["d"]},
    }
    assert _cycles(graph) == [(["a", "b", "c"], ["a", "b", "c", "a"])]
    assert _cycles({"a": {"b": stub["a"]}, "b": {}}) == []
    assert _cycles({"a": {"a": stub["a"]}}) == [(["a"], ["a", "a"])]
    # two cycles through b: one component, reported with its shortest cycle through a
    graph["b"]["d"] = stub["b"]
    assert _cycles(graph) == [(["a", "b", "c", "d"], ["a", "b", "c", "a"])]


def _report(cycles: list[tuple[list[str], list[str]]], graph) -> str:
    """Each component: its members, its shortest cycle, and its function-local edges (the
    usual way a cycle is closed)."""
    parts = []
    for members, path in cycles:
        local = [
            f"  {a} -> {b}    [{imp.where()}]"
            for a in members
            for b, imp in graph[a].items()
            if b in members and imp.local
        ]
        parts.append(
            f"{len(members)} modules: {', '.join(members)}\nshortest cycle: "
            + _describe(path, graph)
            + "\nfunction-local imports inside the component:\n"
            + ("\n".join(local) or "  none")
        )
    return "\n\n".join(parts)


def test_a_function_local_import_closes_a_cycle():
    """A cycle closed by an import inside a function (the old bench/cli.py reading the package
    docstring) is still a cycle, and the report names that import."""
    source = "def main():\n    from arrayprop import bench\n    return bench.__doc__\n"
    (imp,) = _imports("arrayprop.bench.cli", source)
    assert imp.local and _edge(imp) == "arrayprop.bench"
    top = Import("arrayprop.bench", "arrayprop.bench.cli", None, 1, False)
    graph = {
        "arrayprop.bench": {"arrayprop.bench.cli": top},
        "arrayprop.bench.cli": {"arrayprop.bench": imp},
    }
    cycles = _cycles(graph)
    assert [members for members, _ in cycles] == [["arrayprop.bench", "arrayprop.bench.cli"]]
    assert "arrayprop.bench.cli -> arrayprop.bench    [arrayprop.bench.cli:2 (function-local)]" in (
        _report(cycles, graph)
    )


def test_no_import_cycles():
    """No cycle at all, function-local imports counted: a local import may not dodge one."""
    graph = _graph()
    cycles = _cycles(graph)
    report = _report(cycles, graph)
    print(report or "no import cycles")
    assert not cycles, f"{len(cycles)} import cycle(s):\n{report}"


# -- (b) every module imports on its own ---------------------------------------------------------

_IMPORT_EACH = textwrap.dedent(
    """
    import contextlib, importlib, importlib.util, io, json, runpy, sys, traceback

    modules, optional = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
    results = {}
    for name in modules:
        for loaded in [m for m in sys.modules if m == "arrayprop" or m.startswith("arrayprop.")]:
            del sys.modules[loaded]
        try:
            if name.rpartition(".")[2] == "__main__":  # an entry point: run it, asking for help
                sys.argv = [name, "--help"]
                with contextlib.redirect_stdout(io.StringIO()):
                    try:
                        runpy.run_module(name, run_name="__main__", alter_sys=True)
                    except SystemExit as exc:
                        if exc.code not in (0, None):
                            raise
            else:
                importlib.import_module(name)
        except ImportError as exc:
            missing = (exc.name or "").partition(".")[0]
            if missing in optional and importlib.util.find_spec(missing) is None:
                results[name] = ["missing", missing]
            else:
                results[name] = ["error", traceback.format_exc()]
        except BaseException:
            results[name] = ["error", traceback.format_exc()]
        else:
            results[name] = ["ok", ""]
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, list[str]]:
    """module -> ["ok" | "missing" | "error", detail], from one fresh interpreter that empties
    arrayprop out of ``sys.modules`` before each import (the package under test comes first on
    its path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_DIR.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-c",
            _IMPORT_EACH,
            json.dumps(sorted(MODULES)),
            json.dumps(OPTIONAL_LIBRARIES),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_on_its_own(imported_alone, module):
    status, detail = imported_alone[module]
    if status == "missing":
        # Only a module allowed to use the library may need it to import at all.
        assert detail not in ARRAY_LIBRARIES or any(_in(module, p) for p in LIBRARY_PACKAGES), (
            f"{module} needs {detail} to import"
        )
        assert detail not in CONFINED_LIBRARIES or _in(module, CONFINED_LIBRARIES[detail]), (
            f"{module} needs {detail} to import"
        )
        pytest.skip(f"needs {detail}, which is not installed")
    assert status == "ok", f"importing {module} alone failed:\n{detail}"


# -- (c) no cross-module private imports -----------------------------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _listing(found: set[tuple[str, int, str]]) -> list[str]:
    """``module:line: what`` lines, in module and line order."""
    return [f"{module}:{line}: {what}" for module, line, what in sorted(found)]


def _private_uses(module: str, source: str | None = None) -> set[tuple[str, int, str]]:
    """Each private name (``_x``, not ``__x__``) ``module`` takes from another arrayprop module:
    by ``from target import _x``, or as ``m._x`` through a module ``m`` bound by an import."""
    found: set[tuple[str, int, str]] = set()
    bound: dict[str, str] = {}  # local name -> the arrayprop module it is
    for imp in _imports(module, source):
        if not _in(imp.target, ROOT):
            continue
        scope = "function-local" if imp.local else "module-level"
        if imp.name is None:
            if imp.alias is not None and imp.target in MODULES:
                bound[imp.alias] = imp.target
            if any(_private(part) for part in imp.target.split(".")):
                found.add((module, imp.lineno, f"import {imp.target} ({scope})"))
            continue
        full = f"{imp.target}.{imp.name}"
        if full in MODULES:
            bound[imp.alias or imp.name] = full
        if _private(imp.name) and _edge(imp) != module:
            found.add((module, imp.lineno, f"from {imp.target} import {imp.name} ({scope})"))
    tree = _tree(module) if source is None else ast.parse(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and _private(node.attr)
        ):
            target = bound[node.value.id]
            found.add((module, node.lineno, f"{target}.{node.attr} (module attribute)"))
    return found


def _private_imports() -> list[str]:
    return _listing(set().union(*(_private_uses(m) for m in MODULES)))


def test_private_import_finder_finds_private_names():
    """The finder is not blind: each form is reported; dunders and public names are not."""
    source = (
        "from arrayprop.training.args import _widths, positive, __all__\n"
        "from . import evaluation\n"
        "import arrayprop.data.transforms as tr\n"
        "import numpy as _np\n"
        "def f():\n"
        "    from .evaluation import _chunks\n"
        "    return evaluation._eval_sums, tr._fmt_index, tr.split, _np._x\n"
    )
    found = _listing(_private_uses("arrayprop.training.loop", source))
    m = "arrayprop.training.loop"
    assert found == [
        f"{m}:1: from arrayprop.training.args import _widths (module-level)",
        f"{m}:6: from arrayprop.training.evaluation import _chunks (function-local)",
        f"{m}:7: arrayprop.data.transforms._fmt_index (module attribute)",
        f"{m}:7: arrayprop.training.evaluation._eval_sums (module attribute)",
    ]


def test_no_cross_module_private_imports():
    found = _private_imports()
    print("\n".join(found) or "no cross-module private imports")
    assert not found, f"{len(found)} private name(s) imported across modules:\n" + "\n".join(found)


# -- (d) only backends/ and bench/ import the array libraries ------------------------------------


def _library(dotted: str) -> str | None:
    """The array library importing ``dotted`` loads (also through array_api_compat.<lib>)."""
    parts = dotted.split(".")
    if parts[0] in ARRAY_LIBRARIES:
        return parts[0]
    if parts[0] == "array_api_compat" and len(parts) > 1 and parts[1] in ARRAY_LIBRARIES:
        return parts[1]
    return None


def _library_imports(
    modules: dict[str, Path] | None = None, source: str | None = None
) -> list[str]:
    """Each import of an array library outside backends/ and bench/, and of a confined library
    (:data:`CONFINED_LIBRARIES`) outside its subpackage (``source``: the text of every module
    of ``modules``, for the finder's own test)."""
    found: set[tuple[str, int, str]] = set()
    for module in modules or MODULES:
        for imp in _imports(module, source):
            top = imp.target.split(".")[0]
            if top in CONFINED_LIBRARIES and not _in(module, CONFINED_LIBRARIES[top]):
                scope = "function-local" if imp.local else "module-level"
                found.add((module, imp.lineno, f"imports {imp.target} ({scope})"))
        if any(_in(module, p) for p in LIBRARY_PACKAGES):
            continue
        for imp in _imports(module, source):
            if _library(imp.target) is not None:
                what = imp.target if imp.name is None else f"{imp.target} ({imp.name})"
                scope = "function-local" if imp.local else "module-level"
                found.add((module, imp.lineno, f"imports {what} ({scope})"))
    return _listing(found)


def test_library_import_finder_sees_the_backends():
    """The finder is not blind: backends/ imports each library (exempt, so not reported)."""
    seen = {
        _library(imp.target)
        for module in MODULES
        if _in(module, "arrayprop.backends")
        for imp in _imports(module)
    }
    # (array_api_strict is imported by name through importlib, which an import scan cannot see.)
    assert {"cupy", "torch", "jax"} <= seen


def test_library_import_finder_confines_scikit_learn():
    """The finder is not blind: scikit-learn imported outside arrayprop/sklearn is reported,
    inside it is not."""
    source = "import sklearn.base\ndef f():\n    from sklearn import get_config\n"
    outside = {"arrayprop.training.api": MODULES["arrayprop.training.api"]}
    assert _library_imports(outside, source) == [
        "arrayprop.training.api:1: imports sklearn.base (module-level)",
        "arrayprop.training.api:3: imports sklearn (function-local)",
    ]
    inside = {"arrayprop.sklearn.base": MODULES["arrayprop.sklearn.base"]}
    assert _library_imports(inside, source) == []


def test_only_backends_and_bench_import_array_libraries():
    found = _library_imports()
    print("\n".join(found) or "no array library imported outside backends/ and bench/")
    assert not found, f"{len(found)} array-library import(s) outside backends/ and bench/:\n" + (
        "\n".join(found)
    )


def test_mpi_import_finder_sees_distributed():
    """The finder is not blind: arrayprop.distributed imports mpi4py (exempt, so not reported),
    and the same import elsewhere is reported."""
    assert any(
        imp.target.split(".")[0] == "mpi4py"
        for module in MODULES
        if _in(module, "arrayprop.distributed")
        for imp in _imports(module)
    )
    outside = {"arrayprop.training.api": MODULES["arrayprop.training.api"]}
    assert _library_imports(outside, "def f():\n    from mpi4py import MPI\n") == [
        "arrayprop.training.api:2: imports mpi4py (function-local)"
    ]


# -- (e) nn/, optim/, training/ are portable -------------------------------------------------------

#: Code (comments and strings left out) that names a library's namespace: np., cp., torch. ...
_NAMESPACES = ("np", "cp", "numpy", "cupy", "torch", "jax")
_LIBRARIES = ("numpy", *ARRAY_LIBRARIES)

PORTABLE_MODULES = sorted(
    m for m in MODULES if any(_in(m, f"{ROOT}.{p}") for p in PORTABLE_PACKAGES)
)


def _portability_problems(module: str, source: str | None = None) -> list[str]:
    """Each library use in ``module``'s code (``source``: its text, read if not given)."""
    if source is None:
        source = MODULES[module].read_text(encoding="utf-8")
    problems: list[tuple[int, str]] = []
    tokens = [
        t
        for t in tokenize.generate_tokens(io.StringIO(source).readline)
        if t.type not in (tokenize.COMMENT, tokenize.STRING)
    ]
    for tok, nxt in itertools.pairwise(tokens):
        if tok.type == tokenize.NAME and tok.string in _NAMESPACES and nxt.string == ".":
            problems.append((tok.start[0], f"{tok.string}."))
    for imp in _imports(module, source):
        if imp.target.split(".")[0] in _LIBRARIES or _library(imp.target):
            problems.append((imp.lineno, f"import {imp.target}"))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "out":
            problems.append((node.value.lineno, "out="))
        if (  # a host read of the loss: one device sync per call
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "float"
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id.startswith("loss")
        ):
            problems.append((node.lineno, f"float({node.args[0].id})"))
    return [f"line {line}: {what}" for line, what in sorted(problems)]


def test_portability_check_finds_library_calls():
    """The check is not blind: each kind of problem in a made-up source is reported, and a
    mention in a comment or a string is not."""
    source = (
        "import numpy as np\n"
        "x = np.zeros(3)\n"
        "total(a, out=b)\n"
        "v = float(loss)\n"
        "# np.x\n"
        '"""torch.nn"""\n'
    )
    problems = _portability_problems("arrayprop.nn.layers", source)
    assert problems == [
        "line 1: import numpy",
        "line 2: np.",
        "line 3: out=",
        "line 4: float(loss)",
    ]


@pytest.mark.parametrize("module", PORTABLE_MODULES)
def test_module_is_portable(module):
    problems = _portability_problems(module)
    assert not problems, f"{module} is not Array-API-only:\n" + "\n".join(problems)


# -- (f) layers: imports point down ----------------------------------------------------------------

#: The units of the package (a subpackage, or a module), lowest layer first. A module may import
#: its own unit and the units of lower layers, never a unit of its own layer or above. A module
#: belongs to the longest unit that contains it, so kernels/portable.py (which backends' fast
#: modules build on) sits below backends/ and the rest of kernels/ (the dispatcher) above it;
#: ``arrayprop`` is the package face, arrayprop/__init__.py, alone. See docs/architecture.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "arrayprop.errors",
        "arrayprop.version",
        "arrayprop.random",
        "arrayprop.registry",
        "arrayprop.kernels.portable",
    ),
    ("arrayprop.validation",),
    ("arrayprop.backends",),
    ("arrayprop.kernels",),
    ("arrayprop.data", "arrayprop.nn"),
    ("arrayprop.optim",),
    ("arrayprop.checkpoint", "arrayprop.distributed"),
    ("arrayprop.training",),
    ("arrayprop",),
    ("arrayprop.bench", "arrayprop.sklearn"),
    ("arrayprop.cli",),
    ("arrayprop.__main__",),
)


def _unit(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> tuple[int, str] | None:
    """(layer, unit) of ``module``: the longest unit containing it (the root only itself)."""
    found = [
        (len(unit), layer, unit)
        for layer, units in enumerate(layers)
        for unit in units
        if module == unit or (unit != ROOT and _in(module, unit))
    ]
    return max(found)[1:] if found else None


def _layer_problems(
    graph: dict[str, dict[str, Import]], layers: tuple[tuple[str, ...], ...] = LAYERS
) -> list[str]:
    """Each import of a unit on the importer's own layer or above, and each module in no unit."""
    problems = []
    for module in sorted(graph):
        here = _unit(module, layers)
        if here is None:
            problems.append(f"{module}: in no unit of LAYERS (add it where it belongs)")
            continue
        for target, imp in sorted(graph[module].items()):
            there = _unit(target, layers)
            if there is None or there[1] == here[1] or there[0] < here[0]:
                continue
            side = "the same layer" if there[0] == here[0] else "a higher layer"
            problems.append(f"{imp.where()}: {here[1]} imports {target}, on {side}")
    return problems


def test_layer_check_finds_imports_that_point_up():
    """The check is not blind: an upward, a sideways and an unplaced module are reported;
    imports inside a unit and downward ones are not."""
    layers = (("p.low", "p.side"), ("p.high",))
    stub = Import("x", "x", None, 1, False)
    graph = {
        "p.low.a": {"p.low.b": stub, "p.high": Import("p.low.a", "p.high", None, 3, True)},
        "p.low.b": {"p.side": Import("p.low.b", "p.side", None, 4, False)},
        "p.side": {},
        "p.high": {"p.low.a": stub, "p.side": stub},
        "p.other": {},
    }
    assert _layer_problems(graph, layers) == [
        "p.low.a:3 (function-local): p.low imports p.high, on a higher layer",
        "p.low.b:4 (module-level): p.low imports p.side, on the same layer",
        "p.other: in no unit of LAYERS (add it where it belongs)",
    ]


def test_the_layers_cover_the_package():
    """Each unit of LAYERS names a module or package that exists (no stale rows)."""
    assert not [unit for units in LAYERS for unit in units if unit not in MODULES]


def test_imports_point_down_the_layers():
    problems = _layer_problems(_graph())
    print("\n".join(problems) or "every import points down the layers")
    assert not problems, f"{len(problems)} import(s) against the layers:\n" + "\n".join(problems)
