"""The Python examples of the docs run as written: each page's ```python blocks, in order, in
one namespace (later blocks use what earlier ones defined)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arrayprop.nn import registry

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["layers.md"]


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced ```python blocks of a Markdown page."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_block_finder_sees_blocks():
    page = "intro\n```python\nx = 1\n```\ntext\n```sh\nls\n```\n```python\ny = x\n```\n"
    assert python_blocks(page) == ["x = 1\n", "y = x\n"]


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, monkeypatch):
    # The page registers its own layer classes: give it a registry of the built-ins only, so
    # that its names cannot collide with the test suite's classes of the same name.
    builtins = {
        k: v for k, v in registry.LAYER_TYPES.items() if v.__module__.startswith("arrayprop.")
    }
    monkeypatch.setattr(registry, "LAYER_TYPES", builtins)
    blocks = python_blocks((DOCS / page).read_text(encoding="utf-8"))
    assert blocks, f"docs/{page} has no python examples"
    namespace: dict = {"__name__": f"docs_{page}"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/{page} block {i + 1}", "exec"), namespace)
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"docs/{page}, python block {i + 1} failed: {exc!r}") from exc
