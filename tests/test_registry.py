"""The one name lookup behind get_loss, get_metric and get_optimizer."""

from __future__ import annotations

import re

import pytest

import arrayprop as ap
from arrayprop.nn import losses
from arrayprop.optim import registry as optim
from arrayprop.registry import lookup
from arrayprop.training import metrics


def _params():
    return ap.mlp([2, 3], "relu", seed=0, backend=ap.get_backend("numpy")).parameters()


def test_lookup_is_case_insensitive_and_returns_the_entry():
    registry = {"alpha": int, "beta": float}
    assert lookup(registry, "Alpha", "thing") is int
    assert lookup(registry, "BETA", "thing") is float


def test_lookup_error_names_kind_name_and_every_valid_name():
    with pytest.raises(ValueError, match=r"^unknown thing 'gamma'; valid: alpha, beta$"):
        lookup({"alpha": int, "beta": float}, "gamma", "thing")
    with pytest.raises(ValueError, match=r"valid: alpha, or a Loss instance$"):
        lookup({"alpha": int}, "gamma", "thing", instance_of=ap.Loss)


def test_lookup_names_the_type_of_a_non_string():
    with pytest.raises(ValueError, match=r"^unknown loss None \(a NoneType\); valid: "):
        ap.get_loss(None)
    with pytest.raises(ValueError, match=r"<class 'arrayprop\.nn\.losses\.MSE'> \(a type\)"):
        ap.get_loss(ap.MSE)  # the class, not an instance


@pytest.mark.parametrize(
    ("get", "registry", "kind", "base"),
    [
        (ap.get_loss, losses.LOSSES, "loss", "Loss"),
        (metrics.get_metric, metrics.METRICS, "metric", "Metric"),
        (lambda name: ap.get_optimizer(name, _params()), optim.OPTIMIZERS, "optimizer", None),
    ],
    ids=["loss", "metric", "optimizer"],
)
def test_getters_share_the_lookup(get, registry, kind, base):
    for name, cls in registry.items():
        assert type(get(name.upper())) is cls
    expected = f"unknown {kind} 'nope'; valid: {', '.join(registry)}"
    if base is not None:
        expected += f", or a {base} instance"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        get("nope")


def test_instances_pass_through():
    loss, metric = ap.BinaryCrossEntropy(from_logits=True), metrics.Accuracy()
    assert ap.get_loss(loss) is loss
    assert metrics.get_metric(metric) is metric
