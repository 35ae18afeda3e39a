"""The docs stay true to the code: equation markers and relative links.

- Every equation of docs/math.md (``\\tag{N}``) names the line that computes it: some line of
  src/ ends with a ``# eq. N`` comment (``# eq. 3, eq. 4`` for two).
- Every ``eq. N`` in a comment of src/ names an equation that exists.
- Every relative link in docs/*.md and README.md points at a file that exists; a link
  ``file.md#anchor`` at a heading of that file; a link ``file.py#name`` or ```[`Name`](file.py)```
  at a name defined in that file (``Class.method`` for a method).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "arrayprop"
MATH = ROOT / "docs" / "math.md"
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

#: One equation label: a number, optionally a letter (7a).
_LABEL = r"\d+[a-z]?"
#: A marker comment: it starts with ``eq. N`` and may name more (``# eq. 3, eq. 4``).
_MARKER = re.compile(rf"#\s*eq\. {_LABEL}(?:\s*,\s*eq\. {_LABEL})*\b")
#: A markdown link ``[text](target)``; the target has no spaces or parentheses.
_LINK = re.compile(r"\[([^\]\n]*)\]\(([^()\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)")


def equations() -> set[str]:
    """The labels of docs/math.md: every ``\\tag{N}``."""
    return set(re.findall(rf"\\tag\{{({_LABEL})\}}", MATH.read_text(encoding="utf-8")))


def comments(path: Path) -> list[tuple[int, str, bool]]:
    """(line, comment text, whether code precedes it on the line) for every comment."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            found.append((row, tok.string, bool(lines[row - 1][:col].strip())))
    return found


@cache
def markers() -> dict[str, list[str]]:
    """Equation label -> the ``file:line`` of each marker comment naming it."""
    where: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for row, text, inline in comments(path):
            match = _MARKER.match(text)
            if match and inline:
                for label in re.findall(rf"eq\. ({_LABEL})", match.group()):
                    where.setdefault(label, []).append(f"{path.relative_to(ROOT)}:{row}")
    return where


def test_math_md_numbers_its_equations():
    labels = equations()
    assert {str(n) for n in range(1, 18)} | {"7a"} <= labels, sorted(labels)


@pytest.mark.parametrize("label", sorted(equations(), key=lambda s: (int(s.rstrip("ab")), s)))
def test_every_equation_names_the_line_that_computes_it(label):
    assert label in markers(), f"eq. {label} of docs/math.md has no '# eq. {label}' line in src/"


def test_every_equation_reference_in_a_comment_exists():
    labels = equations()
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for row, text, _ in comments(path):
            for label in re.findall(rf"\beqs?\. ({_LABEL})\b", text):
                if label not in labels:
                    bad.append(f"{path.relative_to(ROOT)}:{row}: eq. {label}")
    assert not bad, f"comments name equations docs/math.md does not have: {bad}"


def test_a_marker_sits_on_a_line_of_code():
    # A marker alone on its line would name the comment, not the line that computes.
    alone = [
        f"{path.relative_to(ROOT)}:{row}"
        for path in sorted(SRC.rglob("*.py"))
        for row, text, inline in comments(path)
        if _MARKER.match(text) and not inline
    ]
    assert not alone, f"'# eq. N' markers must end a line of code: {alone}"


# -- links ------------------------------------------------------------------------------------


def links(page: Path) -> list[tuple[int, str, str]]:
    """(line, text, target) of every link outside fenced code blocks."""
    found, fenced = [], False
    for row, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            found += [(row, m.group(1), m.group(2)) for m in _LINK.finditer(line)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


@cache
def defined_names(path: Path) -> set[str]:
    """Top-level functions, classes and assigned names, and ``Class.member`` for members."""
    names: set[str] = set()

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Assign):
            return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return [node.name]
        return []

    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        names.update(targets(node))
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{member}" for item in node.body for member in targets(item))
    return names


def _is_name(text: str) -> bool:
    """Whether a code span names something in Python (not a file name such as ``clip.py``)."""
    if re.search(r"\.(py|md|txt|json|toml|sh)$", text):
        return False
    return re.fullmatch(r"[A-Za-z_][\w.]*(\(.*\))?", text) is not None


def _name_found(name: str, path: Path) -> bool:
    """``a.b.c`` is found when one of ``a.b.c``, ``b.c``, ``c`` is defined in ``path`` (the
    leading parts may be the module path: ``kernels.portable.linear``), or when it is the
    module itself (``arrayprop.validation`` for validation.py)."""
    parts = name.split("(")[0].split(".")
    module = path.parent.name if path.stem == "__init__" else path.stem
    if parts[-1] == module:
        return True
    return any(".".join(parts[i:]) in defined_names(path) for i in range(len(parts)))


def link_problems(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``page``, one line each (``root`` names it)."""
    problems = []
    for row, text, target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:) or an anchor of this page
        file_part, _, anchor = target.partition("#")
        path = (page.parent / file_part).resolve()
        where = f"{page.relative_to(root)}:{row}: [{text}]({target})"
        if not path.exists():
            problems.append(f"{where}: no such file")
            continue
        if anchor and path.suffix == ".md" and anchor not in anchors(path):
            problems.append(f"{where}: no heading #{anchor} in {path.name}")
        if anchor and path.suffix == ".py" and not _name_found(anchor, path):
            problems.append(f"{where}: {anchor} is not defined in {path.name}")
        code = re.fullmatch(r"`([^`]+)`", text)
        if path.suffix == ".py" and code and _is_name(code.group(1)):
            if not _name_found(code.group(1), path):
                problems.append(f"{where}: {code.group(1)} is not defined in {path.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_what_they_name(page):
    problems = link_problems(page)
    assert not problems, "\n".join(problems)


def test_the_link_checker_catches_what_it_should(tmp_path):
    # The checks above must be able to fail: a missing file, heading and name each count.
    (tmp_path / "mod.py").write_text("class A:\n    def run(self): ...\n\nB = 1\n")
    (tmp_path / "other.md").write_text("# A title\n\n## Sub title\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](mod.py) [`A.run`](mod.py) [`pkg.mod.B`](mod.py) [x](other.md#sub-title)\n"
        "[`mod.py`](mod.py) [`pkg.mod`](mod.py) [`A()`](mod.py) [`B`](mod.py)\n"
        "[gone](nothing.py) [`A.stop`](mod.py) [`C`](mod.py) [y](other.md#nope)\n"
        "[z](mod.py#A.run) [w](mod.py#D) [web](https://example.org/x.py)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    problems = link_problems(page, root=tmp_path)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "[gone](nothing.py): no such file",
        "[`A.stop`](mod.py): A.stop is not defined in mod.py",
        "[`C`](mod.py): C is not defined in mod.py",
        "[y](other.md#nope): no heading #nope in other.md",
        "[w](mod.py#D): D is not defined in mod.py",
    ]
