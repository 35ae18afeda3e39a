"""The Python examples of README.md and docs/*.md run as written.

The convention (docs/architecture.md, "Runnable examples"): every fenced ```python block runs,
the blocks of a page in order, in one namespace (later blocks use what earlier ones defined),
in a fresh working directory. An HTML comment on the line just above the fence changes that:

- ``<!-- docs-test: needs cupy -->`` (or ``torch``, ``cuda``, ``array_api_strict``, several
  separated by commas): run only where these are available, else skipped with the reason;
- ``<!-- docs-test: skip: <reason> -->``: never run (a layout or an excerpt, not a program).

To keep the suite quick, :data:`EDITS` shortens what a page trains (fewer epochs): each edit
must match the page's text, so an edit cannot silently stop applying. :data:`CHECKS` then
tests what a page claims of its results.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from arrayprop.nn import registry

ROOT = Path(__file__).resolve().parents[1]
#: Every page of the documentation (those without a python block have nothing to run).
ALL_PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
PAGES = [p for p in ALL_PAGES if "```python\n" in (ROOT / p).read_text(encoding="utf-8")]

MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>.*?)\s*-->")
FENCE = re.compile(r"^```python\n(?P<body>.*?)^```", flags=re.S | re.M)

#: Per page, (text, replacement) pairs applied before running: fewer epochs, same code.
EDITS: dict[str, list[tuple[str, str]]] = {
    "README.md": [("epochs=30", "epochs=2")],
    "docs/training.md": [("epochs=40", "epochs=3"), ("T_max=40", "T_max=3")],
    "docs/sklearn.md": [("max_iter=50", "max_iter=3")],
}

#: Per page, warnings the shortened runs above draw (message regexes): not the docs' own.
SHORTENED: dict[str, list[str]] = {
    "docs/sklearn.md": [r"Stochastic Optimizer: Maximum iterations \(\d+\) reached"],
}


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _has_cuda() -> bool:
    if _has_module("cupy"):
        try:
            import cupy

            return cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # CuPy without a driver or a device
            pass
    if _has_module("torch"):
        import torch

        return torch.cuda.is_available()
    return False


#: What ``needs`` may name, and how to tell whether it is here.
REQUIREMENTS: dict[str, Callable[[], bool]] = {
    "cupy": lambda: _has_module("cupy") and _has_cuda(),
    "cuda": _has_cuda,
    "torch": lambda: _has_module("torch"),
    "array_api_strict": lambda: _has_module("array_api_strict"),
}


@dataclass
class Block:
    """One fenced python block: where it starts, its code, and why it does not run (if so)."""

    line: int
    code: str
    skip: str | None = None


def parse_marker(text: str) -> tuple[str, list[str]]:
    """``("skip", [reason])`` or ``("needs", [requirements])`` for a marker's text."""
    if text.startswith("skip:") and text[5:].strip():
        return "skip", [text[5:].strip()]
    if text.startswith("needs "):
        names = [n.strip() for n in text[6:].split(",") if n.strip()]
        unknown = [n for n in names if n not in REQUIREMENTS]
        if names and not unknown:
            return "needs", names
        raise ValueError(f"docs-test marker needs unknown {unknown}; known: {list(REQUIREMENTS)}")
    raise ValueError(f"docs-test marker {text!r}: write 'skip: <reason>' or 'needs <names>'")


def blocks(text: str) -> list[Block]:
    """The python blocks of a Markdown page, with the marker of each applied."""
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        block = Block(text[: m.start()].count("\n") + 2, m.group("body"))
        marker = MARKER.fullmatch(before.strip())
        if marker:
            kind, args = parse_marker(marker.group("what"))
            if kind == "skip":
                block.skip = args[0]
            else:
                missing = [n for n in args if not REQUIREMENTS[n]()]
                if missing:
                    block.skip = f"needs {', '.join(missing)}, not available here"
        out.append(block)
    return out


def apply_edits(page: str, text: str) -> str:
    for old, new in EDITS.get(page, []):
        assert old in text, f"{page}: the test's edit {old!r} -> {new!r} matches nothing any more"
        text = text.replace(old, new)
    return text


def _readme(ns: dict, out: str) -> None:
    # What the README's example says it does: trains (the loss falls), prints the evaluation,
    # and the gradient check of the trained model passes; it ran on the default backend.
    history, model = ns["history"], ns["model"]
    assert len(history.loss) == 2 and history.loss[-1] < history.loss[0]
    assert "accuracy" in out
    errors = [float(v) for v in re.findall(r"': ([0-9.e+-]+)", out.splitlines()[-1])]
    assert errors and max(errors) < 1e-6, out
    assert model.backend.name == "numpy"


def _training_md(ns: dict, out: str) -> None:
    # The last fit of the page, the resumable run of section 5, learns: its optimizer starts
    # from its own rate, not from one that an earlier schedule already brought to 0.
    history = ns["history"]
    assert history.lr[0] > 0 and history.loss[-1] < 0.9 * history.loss[0], history.as_dict()


#: Per page, checks of what the page says its code does, run on the namespace afterwards.
CHECKS: dict[str, Callable[[dict, str], None]] = {
    "README.md": _readme,
    "docs/training.md": _training_md,
}


# -- the convention itself ---------------------------------------------------------------


def test_blocks_are_found_and_markers_apply():
    page = (
        "intro\n```python\nx = 1\n```\ntext\n```sh\nls\n```\n"
        "<!-- docs-test: skip: a layout -->\n```python\n{...}\n```\n"
        "<!-- docs-test: needs torch, cuda -->\n```python\ny = x\n```\n"
    )
    found = blocks(page)
    assert [b.code for b in found] == ["x = 1\n", "{...}\n", "y = x\n"]
    assert [b.line for b in found] == [3, 11, 15]
    assert found[0].skip is None and found[1].skip == "a layout"
    assert (found[2].skip is None) == (REQUIREMENTS["torch"]() and REQUIREMENTS["cuda"]())


@pytest.mark.parametrize(
    "marker", ["skip:", "needs", "needs tpu", "run please", "needs torch, tpu"]
)
def test_bad_markers_are_refused(marker):
    with pytest.raises(ValueError, match="docs-test marker"):
        blocks(f"<!-- docs-test: {marker} -->\n```python\nx = 1\n```\n")


def test_a_stale_edit_fails(monkeypatch):
    monkeypatch.setitem(EDITS, "page.md", [("epochs=99", "epochs=1")])
    with pytest.raises(AssertionError, match="matches nothing any more"):
        apply_edits("page.md", "fit(epochs=40)")


def test_every_page_with_python_is_covered():
    with_blocks = [p for p in ALL_PAGES if blocks((ROOT / p).read_text(encoding="utf-8"))]
    assert with_blocks == PAGES
    assert {"README.md", "docs/layers.md", "docs/training.md", "docs/optimizers.md"} <= set(PAGES)


# -- the pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, monkeypatch, tmp_path, capsys):
    found = blocks(apply_edits(page, (ROOT / page).read_text(encoding="utf-8")))
    # Pages register their own layer classes: give them a registry of the built-ins only, so
    # that their names cannot collide with the test suite's classes of the same name.
    builtins = {
        k: v for k, v in registry.LAYER_TYPES.items() if v.__module__.startswith("arrayprop.")
    }
    monkeypatch.setattr(registry, "LAYER_TYPES", builtins)
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    namespace: dict = {"__name__": f"docs_{Path(page).stem}"}
    skipped = []
    for block in found:
        if block.skip:
            skipped.append(f"line {block.line}: {block.skip}")
            continue
        try:
            with warnings.catch_warnings():
                for message in SHORTENED.get(page, ()):
                    warnings.filterwarnings("ignore", message=message)
                exec(compile(block.code, f"{page}:{block.line}", "exec"), namespace)
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"{page}, python block at line {block.line}: {exc!r}") from exc
    out = capsys.readouterr().out
    if page in CHECKS:
        CHECKS[page](namespace, out)
    if len(skipped) == len(found):
        pytest.skip(f"{page}: every block skipped ({'; '.join(skipped)})")
