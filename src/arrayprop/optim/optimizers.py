"""Optimizers: in-place updates of ``Parameter.data`` from ``Parameter.grad``.

Ordered from simple to complex (SGD, Adagrad, RMSProp, Adam, AdamW), each a few lines over one
base class that keeps per-parameter state, with the update rules of PyTorch's ``optim`` (same
hyperparameter names and defaults, same place for ε, same bias correction). Array API standard
only: every rule computes a direction ``u`` with fresh arrays, and the last line
W ← W − η u (eq. 7) goes through :func:`arrayprop.kernels.sgd_update`, which updates ``W`` in
place where the backend allows it. Gradients are never modified: they may be read after
:meth:`Optimizer.step`.

Also here: checkpoint state (:meth:`Optimizer.state_dict`), the registry :data:`OPTIMIZERS`, and
gradient clipping by global norm (:func:`clip_grad_norm`). Learning-rate schedules are in
:mod:`arrayprop.schedules`. The rules are written out in docs/optimizers.md.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from arrayprop import kernels
from arrayprop.backends import backend_of
from arrayprop.errors import CheckpointError
from arrayprop.nn.layers import Parameter
from arrayprop.registry import lookup

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSProp",
    "clip_grad_norm",
    "get_optimizer",
    "global_grad_norm",
    "optimizer_from_config",
]


def _check_hyper(owner: str, name: str, value: float, *, positive: bool = False) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "positive" if positive else "non-negative"
        raise ValueError(f"{owner}: {name} must be a finite, {need} number, got {value!r}")
    return value


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_decay_rate(owner: str, name: str, value: float) -> float:
    """A moving-average coefficient (β, α): must lie in [0, 1)."""
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{owner}: {name} must lie in [0, 1), got {value!r}")
    return value


class Optimizer:
    """Base class: the parameters, the learning rate and a state dict per parameter.

    Subclasses set ``name`` (their key in :data:`OPTIMIZERS`), validate their hyperparameters
    in ``__init__``, list them in :meth:`hyperparameters` and implement
    ``_update(i, w, g) -> new w`` for parameter ``i``.

    Attributes
    ----------
    params : list of Parameter
    lr : float
        The current learning rate η (schedules change it between steps).
    initial_lr : float
        The learning rate given at construction, which schedules scale.
    state : list of dict
        Per parameter, the optimizer's running arrays (same shape, dtype and device as the
        parameter) and counters (``"step"``, a Python int); empty until the first step.
    steps : int
        Calls of :meth:`step` so far.
    backend : Backend
        The backend of the first parameter (library, device, dtype).
    """

    name: ClassVar[str] = ""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: expected Parameters, got {type(p).__name__}"
                )
        self.lr = _check_hyper(type(self).__name__, "lr", lr, positive=True)
        self.initial_lr = self.lr
        first = self.params[0].data
        self.backend = backend_of(first, dtype=first.dtype)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.steps = 0
        self._param_ids = frozenset(id(p) for p in self.params)

    def owns(self, params: Iterable[Parameter]) -> bool:
        """Whether every one of ``params`` is among the parameters this optimizer updates."""
        return self._param_ids.issuperset(map(id, params))

    def plain_sgd_lr(self) -> float | None:
        """η when :meth:`step` is exactly W ← W − η ∂C/∂W for every parameter (no state, no
        decay), so the update may be folded into the backward pass; else None."""
        return None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                p.data = self._update(i, p.data, p.grad)

    def _update(self, i: int, w: Any, g: Any) -> Any:
        raise NotImplementedError

    def _count(self, i: int) -> int:
        """Advance and return parameter ``i``'s step counter t (1 on its first update)."""
        t = self.state[i].get("step", 0) + 1
        self.state[i]["step"] = t
        return t

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments other than the parameters, JSON-able (for checkpoints).

        ``"lr"`` is the learning rate given at construction (``initial_lr``), not the current
        one, so that ``type(self)(params, **hyperparameters())`` rebuilds this optimizer.
        """
        return {"lr": self.initial_lr}

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A host-side snapshot of the optimizer, for checkpoints.

        Returns
        -------
        dict
            ``"type"`` (the :data:`OPTIMIZERS` key), ``"hyperparameters"`` (JSON-able
            constructor arguments), ``"lr"`` (float, the current learning rate, which a
            schedule may have moved from ``hyperparameters["lr"]``), ``"steps"`` (int) and
            ``"state"``: per parameter, a dict from name to a host NumPy array (counters become
            0-d int64 arrays). The arrays are copies.
        """
        to_host = self.backend.to_host
        return {
            "type": self.name,
            "hyperparameters": self.hyperparameters(),
            "lr": self.lr,
            "steps": self.steps,
            "state": [{k: to_host(v).copy() for k, v in s.items()} for s in self.state],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` onto this optimizer's parameters and backend.

        Restores ``initial_lr`` (``hyperparameters["lr"]``), the current ``lr``, ``steps`` and
        the state; every other hyperparameter must equal this optimizer's. Arrays take each
        parameter's dtype.

        Raises
        ------
        CheckpointError
            For another optimizer type, other hyperparameters, another number of parameters or
            a state array whose shape differs from its parameter's.
        """
        owner = type(self).__name__
        try:
            kind, hyper = state_dict["type"], dict(state_dict["hyperparameters"])
            steps, states = state_dict["steps"], list(state_dict["state"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(
                f"{owner}: not an optimizer state dict (need type, hyperparameters, steps, "
                f"state): {exc!r}"
            ) from exc
        if kind != self.name:
            raise CheckpointError(f"{owner}: expected a state dict of {self.name!r}, got {kind!r}")
        ours = self.hyperparameters()
        initial_lr = hyper.pop("lr", None)
        ours.pop("lr")
        if hyper != ours:
            raise CheckpointError(f"{owner}: checkpoint hyperparameters {hyper} differ from {ours}")
        lr = state_dict.get("lr", initial_lr)
        # The constructor's lr is positive; a schedule may bring the current one down to 0.
        if not _finite_number(initial_lr) or initial_lr <= 0:
            raise CheckpointError(
                f"{owner}: checkpoint hyperparameters['lr'] must be a finite number > 0, "
                f"got {initial_lr!r}"
            )
        if not _finite_number(lr) or lr < 0:
            raise CheckpointError(
                f"{owner}: checkpoint lr must be a finite number >= 0, got {lr!r}"
            )
        if not isinstance(steps, int) or steps < 0:
            raise CheckpointError(f"{owner}: steps must be an int >= 0, got {steps!r}")
        if len(states) != len(self.params):
            raise CheckpointError(
                f"{owner}: checkpoint has state for {len(states)} parameters, the optimizer has "
                f"{len(self.params)}"
            )
        restored = [
            {key: self._restore(i, key, value) for key, value in saved.items()}
            for i, saved in enumerate(states)
        ]
        self.initial_lr, self.lr = float(initial_lr), float(lr)
        self.steps, self.state = steps, restored

    def _restore(self, i: int, key: str, value: Any) -> Any:
        """One saved state entry of parameter ``i``, back on the backend (counters as int)."""
        if isinstance(value, int) or (
            getattr(value, "shape", None) == () and value.dtype.kind in "iu"
        ):
            return int(value)
        p = self.params[i]
        if not hasattr(value, "dtype") or tuple(value.shape) != p.shape:
            got = tuple(value.shape) if hasattr(value, "dtype") else type(value).__name__
            raise CheckpointError(
                f"{type(self).__name__}: state {key!r} of parameter {i} ({p.name or '?'}) should "
                f"be a host array of shape {p.shape}, got {got}"
            )
        # A copy, so that this optimizer never shares memory with the dict.
        return self.backend.asarray(value.copy(), dtype=p.data.dtype)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    With weight decay λ, momentum μ and velocity v (the conventions of PyTorch's ``optim.SGD``
    with zero dampening; v starts as the first gradient; eq. 16 of docs/math.md)::

        g ← g + λ W
        v ← μ v + g
        u ← g + μ v  (Nesterov)  or  u ← v
        W ← W − η u
    """

    name = "sgd"

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_hyper("SGD", "momentum", momentum)
        self.weight_decay = _check_hyper("SGD", "weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs a positive momentum")

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def plain_sgd_lr(self) -> float | None:
        if type(self) is not SGD or self.momentum or self.weight_decay:
            return None
        return self.lr

    def _update(self, i: int, w: Any, g: Any) -> Any:
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            state = self.state[i]
            v = state.get("velocity")
            # A copy on the first step: the velocity must not alias the caller's gradient.
            v = self.backend.xp.asarray(g, copy=True) if v is None else self.momentum * v + g
            state["velocity"] = v
            g = g + self.momentum * v if self.nesterov else v
        return kernels.sgd_update(self.backend, w, g, self.lr)


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011): a per-element step size from the sum of squared gradients.

    With weight decay λ, learning-rate decay δ, accumulator G (starting at
    ``initial_accumulator_value``) and the parameter's step count t = 1, 2, …
    (as PyTorch's ``optim.Adagrad``)::

        g  ← g + λ W
        η_t = η / (1 + (t − 1) δ)
        G  ← G + g²
        W  ← W − η_t g / (√G + ε)
    """

    name = "adagrad"

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        eps: float = 1e-10,
        initial_accumulator_value: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.lr_decay = _check_hyper("Adagrad", "lr_decay", lr_decay)
        self.weight_decay = _check_hyper("Adagrad", "weight_decay", weight_decay)
        self.eps = _check_hyper("Adagrad", "eps", eps, positive=True)
        self.initial_accumulator_value = _check_hyper(
            "Adagrad", "initial_accumulator_value", initial_accumulator_value
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
            "eps": self.eps,
            "initial_accumulator_value": self.initial_accumulator_value,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        xp, state = self.backend.xp, self.state[i]
        t = self._count(i)
        if self.weight_decay:
            g = g + self.weight_decay * w
        G = state.get("sum")
        if G is None:
            G = xp.full_like(w, self.initial_accumulator_value)
        G = G + g * g
        state["sum"] = G
        lr_t = self.lr / (1 + (t - 1) * self.lr_decay)
        return kernels.sgd_update(self.backend, w, g / (xp.sqrt(G) + self.eps), lr_t)


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton, 2012): divide by a running RMS of the gradient.

    With weight decay λ, smoothing α, momentum μ and running averages s (of g²), ḡ (of g,
    ``centered`` only) and buffer b (``momentum > 0`` only), all starting at zero
    (as PyTorch's ``optim.RMSprop``)::

        g ← g + λ W
        s ← α s + (1 − α) g²
        ḡ ← α ḡ + (1 − α) g;  d = √(s − ḡ²) + ε   (centered)
                              d = √s + ε          (otherwise)
        b ← μ b + g / d;  u = b                   (μ > 0)
                          u = g / d               (otherwise)
        W ← W − η u
    """

    name = "rmsprop"

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        centered: bool = False,
    ) -> None:
        super().__init__(params, lr)
        self.alpha = _check_decay_rate("RMSProp", "alpha", alpha)
        self.eps = _check_hyper("RMSProp", "eps", eps, positive=True)
        self.momentum = _check_hyper("RMSProp", "momentum", momentum)
        self.weight_decay = _check_hyper("RMSProp", "weight_decay", weight_decay)
        self.centered = bool(centered)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "centered": self.centered,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        xp, state, alpha = self.backend.xp, self.state[i], self.alpha
        if self.weight_decay:
            g = g + self.weight_decay * w
        s = state.get("square_avg")
        s = (1 - alpha) * (g * g) if s is None else alpha * s + (1 - alpha) * (g * g)
        state["square_avg"] = s
        if self.centered:
            g_avg = state.get("grad_avg")
            g_avg = (1 - alpha) * g if g_avg is None else alpha * g_avg + (1 - alpha) * g
            state["grad_avg"] = g_avg
            d = xp.sqrt(s - g_avg * g_avg) + self.eps
        else:
            d = xp.sqrt(s) + self.eps
        u = g / d
        if self.momentum:
            b = state.get("momentum_buffer")
            u = u if b is None else self.momentum * b + u
            state["momentum_buffer"] = u
        return kernels.sgd_update(self.backend, w, u, self.lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), optionally AMSGrad (Reddi et al., 2018).

    With moment decay rates β₁, β₂, weight decay λ (added to the gradient, i.e. L2
    regularisation; see :class:`AdamW` for the decoupled form), moments m, v starting at zero and
    the parameter's step count t = 1, 2, … (as PyTorch's ``optim.Adam``; ε is added to the
    bias-corrected root, not under it)::

        g ← g + λ W
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v_max ← max(v_max, v);  v ← v_max          (amsgrad only, for the next line)
        W ← W − η / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    name = "adam"
    #: AdamW sets this: decay W directly instead of adding λ W to the gradient.
    _decoupled: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        owner = type(self).__name__
        if not isinstance(betas, Sequence) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            _check_decay_rate(owner, "betas[0]", betas[0]),
            _check_decay_rate(owner, "betas[1]", betas[1]),
        )
        self.eps = _check_hyper(owner, "eps", eps, positive=True)
        self.weight_decay = _check_hyper(owner, "weight_decay", weight_decay)
        self.amsgrad = bool(amsgrad)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.initial_lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "amsgrad": self.amsgrad,
        }

    def _update(self, i: int, w: Any, g: Any) -> Any:
        xp, state = self.backend.xp, self.state[i]
        beta1, beta2 = self.betas
        t = self._count(i)
        if self.weight_decay and self._decoupled:
            w = w * (1 - self.lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * w
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        m = (1 - beta1) * g if m is None else beta1 * m + (1 - beta1) * g
        v = (1 - beta2) * (g * g) if v is None else beta2 * v + (1 - beta2) * (g * g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.amsgrad:
            v_max = state.get("max_exp_avg_sq")
            v = v if v_max is None else xp.maximum(v_max, v)
            state["max_exp_avg_sq"] = v
        denom = xp.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        return kernels.sgd_update(self.backend, w, m / denom, self.lr / (1 - beta1**t))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    As :class:`Adam`, except that the decay shrinks the weights before the Adam step instead of
    entering the gradient, so it is not rescaled by the adaptive step (as PyTorch's
    ``optim.AdamW``)::

        W ← W (1 − η λ)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v_max ← max(v_max, v);  v ← v_max          (amsgrad only, for the next line)
        W ← W − η / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    name = "adamw"
    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


#: Optimizer classes by their checkpoint / command-line name.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSProp,
    "adagrad": Adagrad,
}


def get_optimizer(name: str, params: Iterable[Parameter], **kwargs: Any) -> Optimizer:
    """Build an optimizer from its name (case-insensitive) and hyperparameters.

    Raises
    ------
    ValueError
        For an unknown name or hyperparameter (the message lists the valid ones), or an invalid
        hyperparameter value.
    """
    cls = lookup(OPTIMIZERS, name, "optimizer")
    valid = [k for k in inspect.signature(cls).parameters if k != "params"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown hyperparameter(s) {', '.join(unknown)}; valid: "
            f"{', '.join(valid)}"
        )
    return cls(params, **kwargs)


def optimizer_from_config(
    params: Iterable[Parameter], type_name: str, hyperparameters: Mapping[str, Any]
) -> Optimizer:
    """Rebuild an optimizer from the ``"type"`` and ``"hyperparameters"`` of a state dict."""
    return get_optimizer(type_name, params, **dict(hyperparameters))


# -- gradient clipping ------------------------------------------------------------------------
def global_grad_norm(params: Iterable[Parameter]) -> Any:
    """‖g‖₂ of all gradients taken as one vector: √(Σ_p Σ_i g_{p,i}²).

    Parameters without a gradient are skipped. Returns a 0-d array on the parameters' backend
    (in the dtype of the gradients), with no device→host copy.
    """
    params = list(params)
    if not params:
        raise ValueError("global_grad_norm: got an empty parameter list")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        data = params[0].data
        return backend_of(data, dtype=data.dtype).scalar(0.0, dtype=data.dtype)
    xp = backend_of(grads[0], dtype=grads[0].dtype).xp
    # asarray: NumPy reductions return scalars, and callers expect a 0-d array.
    return xp.asarray(xp.sqrt(sum(xp.sum(g * g) for g in grads)))


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> Any:
    """Scale all gradients together so that their global norm is at most ``max_norm``.

    As PyTorch's ``nn.utils.clip_grad_norm_``: with N = :func:`global_grad_norm`,
    g ← g · min(1, max_norm / (N + 10⁻⁶)). The factor stays on the device (no host sync, no
    branch on its value) and each ``Parameter.grad`` is replaced by a new array, not changed in
    place.

    Returns
    -------
    array, shape ()
        N, the norm before clipping.
    """
    max_norm = _check_hyper("clip_grad_norm", "max_norm", max_norm, positive=True)
    params = list(params)
    total = global_grad_norm(params)
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return total
    be = backend_of(grads[0].grad, dtype=total.dtype)
    scale = be.xp.minimum(max_norm / (total + 1e-6), be.scalar(1.0, dtype=total.dtype))
    for p in grads:
        p.grad = p.grad * scale
    return total
