"""Issue 12's "for every one of them": each registered layer type is covered by the CLI
grammar, ``summary()``, ``state_dict``, checkpoints and ``.to()`` (one model holding every
layer the CLI can build, on every backend), and every layer of ``arrayprop.nn`` is accounted
for here, so a new layer that misses one of them fails this file."""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap
from arrayprop.cli import models
from arrayprop.nn.registry import LAYER_TYPES

#: Every grammar item and activation of the CLI in one image model: (1, 9, 7) inputs.
SPEC = (
    "conv4k3s1p1,bn,relu,conv5k2,gelu,maxpool2s1,avgpool2,dropout0.2,flatten,ln,"
    "dense12,bn,silu,dense9,elu,dense8,softplus,dense7,tanh,dense6,sigmoid,dense5,"
    "leaky_relu,dense4,identity,softmax,dense3"
)
INPUT = (1, 9, 7)
#: Layer types with their own coverage elsewhere, and why they are not in SPEC.
ELSEWHERE = {
    # integer inputs: the CLI data sets are float images / features (tests/nn/test_embedding.py
    # covers its checkpoints, .to(), summary and state_dict)
    "Embedding": "tests/nn/test_embedding.py",
    # not an item of the grammar: the CLI puts one in front of every model it trains
    # (tests/nn/test_standardize.py covers its checkpoints and .to(); tests/cli that it heads
    # the saved model)
    "Standardize": "tests/nn/test_standardize.py",
    # containers
    "Sequential": "the model itself",
}


def _model(backend):
    return models.build(models.parse_layers(SPEC), INPUT, 3, seed=0, backend=backend)


def test_every_layer_type_is_in_the_spec_or_accounted_for(backend):
    built = {type(layer).__name__ for layer in _model(backend).layers}
    # arrayprop's own layers (other tests register their custom layers in the same registry)
    ours = {name for name, cls in LAYER_TYPES.items() if cls.__module__.startswith("arrayprop.")}
    assert {"Conv2D", "BatchNorm2d", "Embedding", "GELU"} <= ours
    missing = ours - built - set(ELSEWHERE) - {"Sequential"}
    assert not missing, f"layer types neither in the CLI model nor accounted for: {missing}"


def test_summary_state_dict_checkpoint_and_to_cover_every_layer(backend, tmp_path):
    model = _model(backend)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, *INPUT))
    y = rng.integers(0, 3, 6)
    ap.fit(model, x, y, loss="softmax-ce", optimizer="adam", epochs=2, batch_size=3,
           progress=False, seed=0)  # fmt: skip
    want = backend.to_host(model.predict(x))

    # summary(): one row per layer, the parameter count of the model.
    summary = model.summary(input_shape=INPUT)
    assert len(summary.rows) == len(model.layers)
    assert summary.trainable == sum(int(np.prod(p.data.shape)) for p in model.parameters())
    assert tuple(summary.rows[-1][2]) == (None, 3)

    # state_dict: every parameter and every BatchNorm running statistic, by name.
    state = model.state_dict()
    n_bn = sum(isinstance(layer, ap.BatchNorm1d | ap.BatchNorm2d) for layer in model.layers)
    assert sum(k.endswith("running_mean") for k in state) == n_bn == 2
    assert sum(k.endswith("running_var") for k in state) == n_bn
    assert sum(k.endswith((".weight", ".bias")) for k in state) == len(model.parameters())
    fresh = _model(backend)
    fresh.load_state_dict(state)
    np.testing.assert_allclose(backend.to_host(fresh.predict(x)), want, rtol=1e-12, atol=1e-13)

    # Checkpoints: every layer's config and state come back, on another backend too.
    path = tmp_path / "every.npz"
    ap.save_checkpoint(model, path)
    for name in ("numpy", "array_api_strict", backend.name):
        loaded = ap.load_checkpoint(path, backend=name, dtype="float64").model
        assert [repr(layer) for layer in loaded] == [repr(layer) for layer in model]
        np.testing.assert_allclose(
            loaded.backend.to_host(loaded.predict(x)), want, rtol=1e-12, atol=1e-13
        )

    # .to(): another backend and another dtype.
    for target in ("numpy", "array_api_strict"):
        moved = model.to(target)
        assert [repr(layer) for layer in moved] == [repr(layer) for layer in model]
        np.testing.assert_allclose(
            moved.backend.to_host(moved.predict(x)), want, rtol=1e-12, atol=1e-13
        )
    as32 = model.to(dtype="float32")
    np.testing.assert_allclose(as32.backend.to_host(as32.predict(x)), want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("item", ["embedding4", "embed4", "conv"])
def test_what_the_grammar_does_not_take_is_refused_clearly(item):
    """Items outside the grammar (an Embedding) or incomplete ones: a one-line error."""
    import argparse

    with pytest.raises((argparse.ArgumentTypeError, models.UsageError)) as info:
        models.build(models.parse_layers(f"{item},dense3"), (4,), 3)
    assert "\n" not in str(info.value) and item.rstrip("0123456789") in str(info.value)
