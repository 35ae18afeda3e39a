"""The README's Python example runs as written (with fewer epochs) and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_example_trains_and_gradchecks(capsys):
    blocks = _python_blocks()
    assert len(blocks) == 1
    code = blocks[0]
    assert "epochs=30" in code
    namespace: dict = {}
    exec(compile(code.replace("epochs=30", "epochs=3"), str(README), "exec"), namespace)
    out = capsys.readouterr().out
    history, model = namespace["history"], namespace["model"]
    assert len(history.loss) == 3 and history.loss[-1] < history.loss[0]
    # The printed evaluation and the gradient check are real numbers from this run.
    assert "accuracy" in out
    errors = [float(v) for v in re.findall(r"': ([0-9.e+-]+)", out.splitlines()[-1])]
    assert errors and max(errors) < 1e-6
    assert model.backend.name == "numpy"
