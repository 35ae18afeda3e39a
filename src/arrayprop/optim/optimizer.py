"""The :class:`Optimizer` base class: parameters, learning rate, per-parameter state and
checkpoint state dicts; and the hyperparameter checks the optimizers share.

Every rule computes a direction ``u`` with fresh arrays, and the last line W ← W − η u (eq. 7 of
docs/math.md) goes through :func:`arrayprop.kernels.sgd_update`, which updates ``W`` in place
where the backend allows it. Gradients are never modified: they may be read after
:meth:`Optimizer.step`. The rules are written out in docs/optimizers.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from arrayprop.backends import backend_of
from arrayprop.errors import CheckpointError
from arrayprop.nn.parameter import Parameter
from arrayprop.validation import NON_NEGATIVE, POSITIVE, Interval, check

__all__ = [
    "CURRENT_LR",
    "DECAY_RATE",
    "EPS",
    "LR",
    "STEPS",
    "Optimizer",
    "check_state",
]


#: The learning rate η given to a constructor.
LR = POSITIVE
#: The current learning rate in a state dict: a schedule may have brought it down to 0.
CURRENT_LR = NON_NEGATIVE
#: A step count in a state dict.
STEPS = Interval(int, 0, None)
#: A moving-average coefficient (Adam's β₁ and β₂, RMSProp's α).
DECAY_RATE = Interval(float, 0, 1, closed="left")
#: The ε added to a denominator.
EPS = POSITIVE


def check_state(whose: str, what: str, value: Any, constraint: Interval) -> Any:
    """:func:`~arrayprop.validation.check` for a value read back from a state dict.

    Returns ``value`` converted to the constraint's kind, or raises
    :class:`~arrayprop.errors.CheckpointError` (the file, not the caller, is at fault) with the
    message of :func:`~arrayprop.validation.check`.
    """
    try:
        return check(whose, what, value, constraint)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


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
        Per parameter, the optimizer's running arrays (same shape and device as the parameter;
        dtype :meth:`state_dtype`: the parameter's, float32 for float16 and bfloat16) and
        counters (``"step"``, a Python int); empty until the first step.
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
        self.lr = check(type(self).__name__, "lr", lr, LR)
        self.initial_lr = self.lr
        first = self.params[0].data
        self.backend = backend_of(first, dtype=first.dtype)
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.steps = 0
        self._wide: dict[Any, Any] = {}
        self._param_ids = frozenset(id(p) for p in self.params)

    def owns(self, params: Iterable[Parameter]) -> bool:
        """Whether every one of ``params`` is among the parameters this optimizer updates."""
        return self._param_ids.issuperset(map(id, params))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                p.data = self.apply(i, p.data, p.grad)

    def apply(self, i: int, w: Any, g: Any) -> Any:
        """Parameter ``i``'s new value: :meth:`_update` in :meth:`state_dtype`.

        A float16 or bfloat16 parameter is updated in float32 (weight and gradient up-cast, the
        result rounded back once), so its state (moments, sums) is float32 too: ε = 1e-8 is 0
        in float16 and g² underflows there for |g| < 2.4e-4, which makes m / (√v + ε) a 0/0.
        """
        wide = self.state_dtype(w.dtype)
        if wide == w.dtype:
            return self._update(i, w, g)
        xp = self.backend.xp
        new = self._update(i, xp.astype(w, wide), xp.astype(g, wide))
        return xp.astype(new, w.dtype)

    def state_dtype(self, dtype: Any) -> Any:
        """The dtype of the update arithmetic and state of a parameter of ``dtype``: float32
        for float16 and bfloat16, else ``dtype`` itself."""
        wide = self._wide.get(dtype)
        if wide is None:
            xp = self.backend.xp
            wide = self._wide[dtype] = xp.float32 if xp.finfo(dtype).bits < 32 else dtype
        return wide

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
        # The constructor's lr is positive; a schedule may bring the current one down to 0.
        initial_lr = check_state(owner, "checkpoint hyperparameters['lr']", initial_lr, LR)
        lr = check_state(owner, "checkpoint lr", state_dict.get("lr", initial_lr), CURRENT_LR)
        steps = check_state(owner, "steps", steps, STEPS)
        if len(states) != len(self.params):
            raise CheckpointError(
                f"{owner}: checkpoint has state for {len(states)} parameters, the optimizer has "
                f"{len(self.params)}"
            )
        if not all(isinstance(saved, Mapping) for saved in states):
            raise CheckpointError(f"{owner}: checkpoint state entries must be dicts")
        restored = [
            {key: self._restore(i, key, value) for key, value in saved.items()}
            for i, saved in enumerate(states)
        ]
        # The same hyperparameters give every updated parameter the same entries.
        kinds = {tuple(sorted(s)) for s in restored if s}
        if len(kinds) > 1:
            raise CheckpointError(
                f"{owner}: checkpoint state entries differ between parameters: {sorted(kinds)}"
            )
        self.initial_lr, self.lr = initial_lr, lr
        self.steps, self.state = steps, restored

    def _restore(self, i: int, key: str, value: Any) -> Any:
        """One saved state entry of parameter ``i``, back on the backend: the counter
        ``"step"`` (a 0-d integer >= 0) as an int, every other entry a floating-point array of
        the parameter's shape."""
        p = self.params[i]
        where = f"{type(self).__name__}: state {key!r} of parameter {i} ({p.name or '?'})"
        if key == "step":
            if isinstance(value, int) and not isinstance(value, bool):
                count = value
            elif getattr(value, "shape", None) == () and value.dtype.kind in "iu":
                count = int(value)
            else:
                raise CheckpointError(f"{where} should be an integer count, got {value!r}")
            return check_state(type(self).__name__, f"state {key!r}", count, STEPS)
        if not hasattr(value, "dtype") or not hasattr(value, "shape"):
            raise CheckpointError(
                f"{where} should be a host array of shape {p.shape}, got {type(value).__name__}"
            )
        if value.dtype.kind != "f" or tuple(value.shape) != p.shape:
            raise CheckpointError(
                f"{where} should be a floating-point host array of shape {p.shape}, got "
                f"{tuple(value.shape)} ({value.dtype})"
            )
        # A copy, so that this optimizer never shares memory with the dict.
        return self.backend.asarray(value.copy(), dtype=self.state_dtype(p.data.dtype))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"
