"""The top-level namespace: what ``import arrayprop`` offers, and what it does not import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import arrayprop as ap
from arrayprop import checkpoint
from arrayprop.training import cuda_graph, precision

#: Array libraries a user may not have (or may not want started): importing arrayprop must not
#: import any of them; a backend imports its own library when first asked for.
HEAVY = ("cupy", "torch", "jax", "jaxlib", "array_api_strict", "array_api_compat", "matplotlib")

REEXPORTS = [
    ("save_checkpoint", checkpoint.save),
    ("load_checkpoint", checkpoint.load),
    ("restore_optimizer", checkpoint.restore_optimizer),
    ("Checkpoint", checkpoint.Checkpoint),
    ("CudaGraphStep", cuda_graph.CudaGraphStep),
    ("MixedPrecision", precision.MixedPrecision),
    ("enable_tf32", precision.enable_tf32),
    ("tf32", precision.tf32),
]


@pytest.mark.parametrize(("name", "obj"), REEXPORTS, ids=[name for name, _ in REEXPORTS])
def test_reexport_is_the_module_object(name, obj):
    assert getattr(ap, name) is obj
    assert name in ap.__all__


def test_checkpoint_module_is_reachable_as_attribute():
    assert ap.checkpoint is sys.modules["arrayprop.checkpoint"]


def test_all_names_exist_once():
    assert len(set(ap.__all__)) == len(ap.__all__)
    missing = [name for name in ap.__all__ if not hasattr(ap, name)]
    assert missing == []
    namespace: dict = {}
    exec("from arrayprop import *", namespace)
    assert set(ap.__all__) <= set(namespace)


def _modules_after_import(env_extra: dict[str, str]) -> list[str]:
    """Top-level module names present after ``import arrayprop`` in a fresh interpreter."""
    src = str(Path(ap.__file__).resolve().parents[1])
    env = {**os.environ, **env_extra}
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = (
        "import json, sys, arrayprop\n"
        "assert arrayprop.__file__.startswith(sys.argv[1]), arrayprop.__file__\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, src],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("backend_env", [None, "torch", "cupy", "jax"])
def test_import_arrayprop_stays_light(backend_env):
    # Even with ARRAYPROP_BACKEND naming a heavy library, the library waits for get_backend().
    extra = {} if backend_env is None else {"ARRAYPROP_BACKEND": backend_env}
    loaded = set(_modules_after_import(extra))
    assert "arrayprop" in loaded and "numpy" in loaded
    assert sorted(loaded & set(HEAVY)) == []


def test_top_level_checkpoint_round_trip(tmp_path):
    model = ap.mlp([4, 5, 3], "tanh", seed=1, backend=ap.get_backend("numpy", dtype="float64"))
    opt = ap.Adam(model.parameters(), lr=1e-2)
    x = np.random.default_rng(0).standard_normal((6, 4))
    y = np.array([0, 1, 2, 0, 1, 2])
    ap.fit(model, x, y, loss="softmax-ce", optimizer=opt, epochs=2, batch_size=3, progress=None)
    path = ap.save_checkpoint(model, tmp_path / "m.npz", optimizer=opt)
    ckpt = ap.load_checkpoint(path, backend="numpy")
    assert isinstance(ckpt, ap.Checkpoint)
    np.testing.assert_array_equal(ckpt.model.predict(x), model.predict(x))
    opt2 = ap.restore_optimizer(ap.Adam(ckpt.model.parameters(), lr=1e-2), ckpt)
    for a, b in zip(opt.state_dict()["state"], opt2.state_dict()["state"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


def test_readme_api_table_lists_exactly_the_public_names():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## API at a glance", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in section.splitlines() if line.startswith("| ")]
    listed = set()
    for cell in rows[1:]:  # rows[0] is the header
        for code in re.findall(r"`([^`]+)`", cell):
            name = code.split("(", 1)[0]
            if "." not in name:
                listed.add(name)
    assert sorted(listed - set(ap.__all__)) == []
    assert sorted(set(ap.__all__) - listed - {"__version__"}) == []
