"""Finite-difference gradient checks, in float64, on any backend.

The analytic gradients of backward() are compared with central differences
(C(θ + ε) − C(θ − ε)) / 2ε for every parameter element and every input element (eq. 17 of
docs/math.md). Perturbed values are rebuilt on the host and copied back, so the check runs
unchanged on backends whose arrays are immutable (JAX).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrayprop.backends import Backend, backend_of, get_backend
from arrayprop.nn.layer import Layer
from arrayprop.nn.losses import Loss
from arrayprop.random import host_rng

__all__ = ["gradcheck", "relative_error"]


def relative_error(analytic: Any, numeric: Any) -> float:
    """‖a − n‖₂ / (‖a‖₂ + ‖n‖₂), 0 when both are zero. Host arrays in, a float out.

    Norm-wise rather than element-wise, so entries that are zero up to rounding (where the
    central difference has only its O(ε²) and rounding error) do not dominate.
    """
    diff = float(((analytic - numeric) ** 2).sum() ** 0.5)
    scale = float((analytic**2).sum() ** 0.5) + float((numeric**2).sum() ** 0.5)
    return 0.0 if scale == 0.0 else diff / scale  # eq. 17


def _numeric(f: Callable[[], float], host: Any, set_value: Callable[[Any], None], eps: float):
    grad = host * 0.0
    flat = grad.reshape(-1)
    for k in range(host.size):
        bumped = host.copy()
        bumped.reshape(-1)[k] += eps
        set_value(bumped)
        c_plus = f()
        bumped.reshape(-1)[k] -= 2 * eps
        set_value(bumped)
        c_minus = f()
        flat[k] = (c_plus - c_minus) / (2 * eps)  # eq. 17
    set_value(host)
    return grad


def gradcheck(
    model_or_layer: Layer | Loss,
    x: Any,
    y: Any = None,
    loss: Loss | None = None,
    eps: float = 1e-6,
    seed: int = 0,
) -> dict[str, float]:
    """Compare backward() with central differences, in float64.

    Parameters
    ----------
    model_or_layer : Layer, Sequential or Loss
        What to check. It is copied to float64 on its own backend; the original is untouched.
        For a Loss, ``x`` is the prediction and ``y`` the target, and ∂C/∂pred is checked.
    x : array-like, shape (batch, in_features)
        The input (host or backend array); float data is checked in float64, integer data
        (indices) is passed as it is.
    y, loss : optional
        Targets and the loss giving the scalar C. Without a loss, C = Σ out ⊙ R for a fixed
        random R, which exercises every output's gradient.
    eps : float
        The finite-difference step.

    Returns
    -------
    dict
        The relative error (see :func:`relative_error`) per parameter name and for ``"input"``
        (no ``"input"`` entry for integer input, e.g. the indices of an Embedding: they are
        not differentiable and are never perturbed).
        A correct backward gives about 1e-9 or less; the tests require < 1e-6.
    """
    if isinstance(model_or_layer, Loss):
        return _gradcheck_loss(model_or_layer, x, y, eps)
    if not isinstance(model_or_layer, Layer):
        raise TypeError(
            f"gradcheck: expected a Layer, Sequential or Loss, got {type(model_or_layer).__name__}"
        )
    layer = model_or_layer
    be = layer.backend if layer.backend is not None else backend_of(x)
    be64 = be.with_dtype("float64")
    m = layer.to(be64)
    x_host = be.to_host(x) if be.owns(x) else _host(x)
    # Integer input (indices of an Embedding) is not differentiable: it keeps its dtype, is
    # never perturbed, and the result has no "input" entry.
    indices = x_host.dtype.kind in "iu"
    x_host = x_host if indices else x_host.astype("float64")
    state = {"x": be64.asarray(x_host)}

    out = m.forward(state["x"])
    if loss is None:
        r = be64.asarray(host_rng(seed).standard_normal(tuple(out.shape)))

        def cost_and_grad(out: Any) -> tuple[Any, Any]:
            return be64.xp.sum(out * r), r

    else:

        def cost_and_grad(out: Any) -> tuple[Any, Any]:
            return loss.value_and_grad(out, y)

    _, grad_out = cost_and_grad(out)
    grad_in = m.backward(grad_out)
    named = list(m.named_parameters())
    analytic = {name: be64.to_host(p.grad) for name, p in named}

    def cost() -> float:
        return float(be64.to_host(cost_and_grad(m.forward(state["x"]))[0]))

    errors: dict[str, float] = {}
    for name, p in named:

        def set_param(value: Any, p: Any = p) -> None:
            p.data = be64.asarray(value)

        numeric = _numeric(cost, be64.to_host(p.data).copy(), set_param, eps)
        errors[name] = relative_error(analytic[name], numeric)

    if indices:
        return errors

    def set_input(value: Any) -> None:
        state["x"] = be64.asarray(value)

    numeric_in = _numeric(cost, x_host.copy(), set_input, eps)
    errors["input"] = relative_error(be64.to_host(grad_in), numeric_in)
    return errors


def _host(x: Any) -> Any:
    """Host data (lists, NumPy arrays) as a host array: float data in float64, integer data
    (indices) as it is."""
    return get_backend("numpy", dtype="float64").asarray(x)


def _gradcheck_loss(loss: Loss, pred: Any, target: Any, eps: float) -> dict[str, float]:
    be: Backend = backend_of(pred) if not _is_plain_host(pred) else None
    be64 = be.with_dtype("float64") if be is not None else _default64()
    p_host = be.to_host(pred).astype("float64") if be is not None else _host(pred).astype("float64")
    t = target
    if be is not None and be.owns(target):
        t = be.to_host(target)
        if "float" in str(t.dtype):
            t = t.astype("float64")
    if be is not None and not _is_plain_host(pred):
        # On the predictions' backend: a user's loss may not convert its target itself.
        t = be64.asarray(t, dtype=be64.dtype if "float" in str(getattr(t, "dtype", "")) else None)
    state = {"p": be64.asarray(p_host)}
    _, grad = loss.value_and_grad(state["p"], t)
    analytic = be64.to_host(grad)

    def cost() -> float:
        return float(be64.to_host(loss.value_and_grad(state["p"], t)[0]))

    def set_pred(value: Any) -> None:
        state["p"] = be64.asarray(value)

    return {"input": relative_error(analytic, _numeric(cost, p_host.copy(), set_pred, eps))}


def _is_plain_host(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "numpy"


def _default64() -> Backend:
    return get_backend(dtype="float64")
