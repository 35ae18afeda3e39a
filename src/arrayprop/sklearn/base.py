"""What :class:`~arrayprop.sklearn.MLPClassifier` and :class:`~arrayprop.sklearn.MLPRegressor`
share: hyper-parameters and their checks, where to train (backend and device, following the
data), the network, the solver with scikit-learn's L2 penalty, the epoch monitor (loss curve,
``tol`` / ``n_iter_no_change``, early stopping on a validation fraction) and pickling.

Training is :func:`arrayprop.fit`: this module only prepares its arguments. See docs/sklearn.md.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn import config_context, get_config
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from arrayprop.backends import BACKENDS, Backend, backend_of, get_backend, is_host
from arrayprop.errors import BackendMismatchError
from arrayprop.nn import ACTIVATIONS, Dense, Dropout, Layer, Sequential
from arrayprop.nn.losses import Loss
from arrayprop.optim import SGD, Adam, Optimizer
from arrayprop.training import Callback, fit, predict
from arrayprop.validation import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Interval,
    Options,
    check,
)

__all__ = [
    "HYPERPARAMETERS",
    "L2SGD",
    "BaseMLP",
    "L2Adam",
    "Monitor",
    "host_array",
    "rows",
    "sample_weights",
]

#: scikit-learn's activation names -> arrayprop's.
ACTIVATION_NAMES = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}

#: What the scalar hyper-parameters may be (``hidden_layer_sizes`` and ``batch_size`` are
#: checked by :meth:`BaseMLP._checked`).
HYPERPARAMETERS: dict[str, Interval | Options] = {
    "activation": Options(tuple(ACTIVATION_NAMES)),
    "solver": Options(("adam", "sgd")),
    "alpha": NON_NEGATIVE,
    "learning_rate_init": POSITIVE,
    "max_iter": POSITIVE_INT,
    "shuffle": Options((True, False)),
    "tol": NON_NEGATIVE,
    "verbose": Options((True, False, 0, 1)),
    "warm_start": Options((True, False)),
    "momentum": Interval(float, 0, 1),
    "nesterovs_momentum": Options((True, False)),
    "early_stopping": Options((True, False)),
    "validation_fraction": Interval(float, 0, 1, closed="neither"),
    "beta_1": Interval(float, 0, 1, closed="left"),
    "beta_2": Interval(float, 0, 1, closed="left"),
    "epsilon": POSITIVE,
    "n_iter_no_change": POSITIVE_INT,
    "dropout": Interval(float, 0, 1, closed="left"),
    "dtype": Options(("float64", "float32")),
}


class Penalty:
    """Mixin of an optimizer: scikit-learn's L2 penalty α‖W‖² / (2 B) on the weights (not the
    biases) of each step, as the gradient term α W / B added before the rule's update.

    ``l2[i]`` is α / B for weight ``i`` (B: the batch's sample count, times the mean sample
    weight when there are weights), 0 for biases.
    """

    l2: list[float]

    def _update(self, i: int, w: Any, g: Any) -> Any:
        if self.l2[i]:
            g = g + self.l2[i] * w
        return super()._update(i, w, g)


class L2Adam(Penalty, Adam):
    """:class:`~arrayprop.Adam` with :class:`Penalty` (``solver="adam"``)."""


class L2SGD(Penalty, SGD):
    """:class:`~arrayprop.SGD` with :class:`Penalty` (``solver="sgd"``); never folded into the
    weight-gradient GEMM, since the penalty enters the gradient."""

    def folds(self) -> bool:
        return False if any(self.l2) else super().folds()


class Monitor(Callback):
    """Once per epoch of :func:`arrayprop.fit`: append to ``loss_curve_`` (the data loss plus the
    penalty), count ``n_iter_`` and ``t_``, and stop as scikit-learn's MLP does.

    Without early stopping, an epoch counts as no improvement when its loss is above the best
    loss minus ``tol``; with it, when the validation score is below the best score plus ``tol``.
    Training stops once more than ``n_iter_no_change`` epochs in a row counted so; with early
    stopping the weights of the best validation score are restored at the end.
    """

    def __init__(
        self, est: BaseMLP, n_samples: int, n_train: float, steps: int, validation: Any
    ) -> None:
        self.est, self.n_samples, self.n_train = est, n_samples, n_train
        self.steps, self.validation = steps, validation
        self.best_weights: list[Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> bool:
        est = self.est
        model = self.model
        xp = model.backend.xp
        sq = [xp.sum(p.data * p.data) for p in model.parameters() if p.data.ndim >= 2]
        sqnorm = float(model.backend.to_host(xp.sum(xp.stack(sq))))
        # Each step adds α‖W‖²/(2B); averaged over the epoch's samples: α‖W‖² · steps / (2 n).
        loss = logs["loss"] + 0.5 * est.alpha * sqnorm * self.steps / self.n_train
        est.loss_curve_.append(loss)
        est.loss_ = loss
        est.n_iter_ += 1
        est.t_ += self.n_samples
        tol = est.tol
        if self.validation is None:
            if loss > est.best_loss_ - tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        else:
            score = est.validation_score(*self.validation)
            est.validation_scores_.append(score)
            if score < est.best_validation_score_ + tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_weights = [xp.asarray(p.data, copy=True) for p in model.parameters()]
        if est._no_improvement_count > est.n_iter_no_change:
            est._converged = True
            return True
        return False

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            for p, w in zip(self.model.parameters(), self.best_weights, strict=True):
                p.data = w


def _library(x: Any) -> Backend | None:
    """The backend of an array of a device library (torch, CuPy, ...); None for host data."""
    if is_host(x):
        return None
    try:
        return backend_of(x)
    except BackendMismatchError:
        return None


class BaseMLP(BaseEstimator):
    """The shared machinery of the two estimators; not for direct use."""

    def validation_score(self, X: Any, y: np.ndarray, sample_weight: Any) -> float:
        """The early-stopping score on held-out (X, y): accuracy or R², host labels/targets."""
        raise NotImplementedError

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate_init: float = 0.001,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        dropout: float = 0.0,
        backend: str | None = None,
        device: Any = None,
        dtype: str = "float64",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dropout = dropout
        self.backend = backend
        self.device = device
        self.dtype = dtype

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.non_deterministic = False
        return tags

    # -- hyper-parameters --------------------------------------------------------------------
    def _checked(self) -> tuple[list[int], Any]:
        """Check every hyper-parameter; returns (hidden sizes, batch size or "auto")."""
        whose = type(self).__name__
        for name, rule in HYPERPARAMETERS.items():
            check(whose, name, getattr(self, name), rule)
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, int | np.integer) else list(sizes)
        sizes = [
            check(whose, f"hidden_layer_sizes[{i}]", n, POSITIVE_INT) for i, n in enumerate(sizes)
        ]
        batch = self.batch_size
        if batch != "auto":
            batch = check(whose, "batch_size", batch, POSITIVE_INT)
        if self.backend is not None:
            check(whose, "backend", self.backend, Options(tuple(BACKENDS)))
        return sizes, batch

    # -- where to train, and what kind of array to hand back --------------------------------
    def _native(self, X: Any) -> Backend | None:
        """The backend of X when it is an array of a device library and array-API dispatch is
        on (``sklearn.set_config(array_api_dispatch=True)``) or ``backend`` is set: then the
        estimator works on it and hands back arrays of that library. None otherwise."""
        be = _library(X)
        if be is None or be.name == "numpy":
            return None
        if get_config()["array_api_dispatch"] or self.backend is not None:
            return be
        return None

    def _train_backend(self, X: Any) -> Backend:
        if self.backend is not None:
            return get_backend(self.backend, device=self.device, dtype=self.dtype)
        native = self._native(X)
        if native is not None:
            return native.with_dtype(self.dtype)
        return get_backend("numpy", dtype=self.dtype)

    def _validate_X(self, X: Any, y: Any = None, *, reset: bool, **kw: Any) -> Any:
        """scikit-learn's input checks (shape, NaN/inf, sparse, feature names), keeping arrays of
        a device library where they are when the estimator works on them."""
        native = self._native(X)
        with config_context(array_api_dispatch=native is not None):
            if not kw.pop("with_y", False):
                return validate_data(
                    self,
                    X,
                    reset=reset,
                    accept_sparse=False,
                    dtype=_FLOATS if native is None else None,
                )
            return validate_data(
                self,
                X,
                y,
                reset=reset,
                accept_sparse=False,
                dtype=_FLOATS if native is None else None,
                **kw,
            )

    def _on(self, be: Backend, X: Any) -> Any:
        """X where ``be`` can take it: host data, or an array of ``be`` (another library's or
        device's array goes through the host)."""
        src = _library(X)
        if src is None or (src.name == be.name and be.owns(X)):
            return X
        return src.to_host(X)

    def _handback(self, X: Any, out: Any) -> Any:
        """``out`` (an array of the model's backend) as the kind of array X was."""
        native = self._native(X)
        be = self._model.backend
        if native is None:
            return be.to_host(out)
        if native.name == be.name and native.owns(out):
            return out
        return native.asarray(be.to_host(out))

    # -- the network --------------------------------------------------------------------------
    def _build(self, be: Backend, sizes: list[int], seed: int) -> Sequential:
        act = ACTIVATION_NAMES[self.activation]
        init = "he" if act == "relu" else "glorot"
        rng = np.random.default_rng(seed)
        layers: list[Layer] = []
        for i in range(len(sizes) - 1):
            layers.append(Dense(sizes[i], sizes[i + 1], init=init, seed=rng, backend=be))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[act]())
                if self.dropout:
                    layers.append(Dropout(self.dropout))
        return Sequential(*layers)

    def _rebuild(self) -> Sequential:
        """The network from ``coefs_`` / ``intercepts_`` (after unpickling), on the backend it was
        trained on when that is available here, else on NumPy."""
        try:
            be = get_backend(self._backend_name, device=self._device_name, dtype=self.dtype)
        except Exception:  # the library or device of the pickling machine is not here
            be = get_backend("numpy", dtype=self.dtype)
        act = ACTIVATION_NAMES[self.activation]
        layers: list[Layer] = []
        n = len(self.coefs_)
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            layers.append(Dense(w.shape[0], w.shape[1], weight=w, bias=b, backend=be))
            if i < n - 1:
                layers.append(ACTIVATIONS[act]())
                if self.dropout:
                    layers.append(Dropout(self.dropout))
        return Sequential(*layers)

    def _network(self) -> Sequential:
        check_is_fitted(self, "coefs_")
        if getattr(self, "_model", None) is None:
            self._model = self._rebuild()
        return self._model

    def _solver(self, model: Sequential, l2: float) -> Optimizer:
        params = model.parameters()
        if self.solver == "adam":
            opt: Optimizer = L2Adam(
                params,
                lr=self.learning_rate_init,
                betas=(self.beta_1, self.beta_2),
                eps=self.epsilon,
            )
        else:
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            opt = L2SGD(
                params, lr=self.learning_rate_init, momentum=self.momentum, nesterov=nesterov
            )
        opt.l2 = [l2 if p.data.ndim >= 2 else 0.0 for p in params]
        return opt

    # -- training -------------------------------------------------------------------------------
    def _train(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        n_outputs: int,
        loss: Loss,
        *,
        incremental: bool,
        validation: Any = None,
    ) -> None:
        """Train on (X, y) (y in the form ``loss`` takes) with :func:`arrayprop.fit`: ``max_iter``
        epochs (one when ``incremental``), continuing from the current weights when
        ``incremental`` or ``warm_start``."""
        sizes, batch = self._checked()
        be = self._train_backend(X)
        self._fit_where = _where(X)
        n = X.shape[0]
        continuing = (incremental or self.warm_start) and getattr(self, "_model", None) is not None
        if not incremental or not hasattr(self, "_rng"):
            self._rng = check_random_state(self.random_state)
        if not continuing:
            seed = int(self._rng.randint(np.iinfo(np.int32).max))
            self._model = self._build(be, [X.shape[1], *sizes, n_outputs], seed)
            self._backend_name, self._device_name = be.name, str(be.device)
            self.n_iter_, self.t_ = 0, 0
            self.loss_curve_ = []
            self.best_loss_ = math.inf
            self._optimizer = None
        model = self._model
        be = model.backend
        batch = min(200, n) if batch == "auto" else min(batch, n)
        mean_w = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        if not incremental or self._optimizer is None:
            self._optimizer = self._solver(model, self.alpha / (batch * mean_w))
        else:
            self._optimizer.l2 = [
                self.alpha / (batch * mean_w) if v else 0.0 for v in self._optimizer.l2
            ]
        self._no_improvement_count = 0
        self._converged = False
        if validation is not None:
            self.validation_scores_ = (
                [] if not continuing else getattr(self, "validation_scores_", [])
            )
            self.best_validation_score_ = -math.inf
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
        n_train = float(n if sample_weight is None else np.sum(sample_weight))
        monitor = Monitor(self, n, n_train, -(-n // batch), validation)
        epochs = 1 if incremental else self.max_iter
        fit(
            model,
            self._on(be, X),
            self._on(be, y),
            loss=loss,
            optimizer=self._optimizer,
            epochs=epochs,
            batch_size=batch,
            shuffle=bool(self.shuffle),
            seed=int(self._rng.randint(np.iinfo(np.int32).max)),
            metrics=None,
            callbacks=[monitor],
            progress="lines" if self.verbose else None,
            sample_weight=None if sample_weight is None else self._on(be, sample_weight),
        )
        self.coefs_ = [np.array(be.to_host(d.weight.data)) for d in _dense(model)]
        self.intercepts_ = [np.array(be.to_host(d.bias.data)) for d in _dense(model)]
        self.n_layers_ = len(sizes) + 2
        if not incremental and not self._converged and not self.early_stopping:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _split(self, n: int, stratify: Any) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) row indices for early stopping: ``validation_fraction`` of the
        samples, drawn with ``random_state`` (stratified by ``stratify`` when given)."""
        rs = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        i_tr, i_val = train_test_split(
            np.arange(n), test_size=self.validation_fraction, random_state=rs, stratify=stratify
        )
        if i_val.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__}: validation_fraction={self.validation_fraction} leaves "
                f"{i_val.shape[0]} validation sample(s) of {n}; early stopping needs 2"
            )
        return i_tr, i_val

    def _host_outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for already checked X as a host array (validation scores,
        during training)."""
        be = self._model.backend
        return np.asarray(be.to_host(predict(self._model, self._on(be, X), batch_size=1024)))

    def _outputs(self, X: Any, method: str) -> Any:
        """The network's raw outputs for X (checked), an array of the model's backend.

        Under array-API dispatch, X must come from the library and device the training data
        came from (scikit-learn's rule for array-API estimators): a ``ValueError`` otherwise.
        """
        model = self._network()
        if get_config()["array_api_dispatch"]:
            where = _where(X)
            fitted = getattr(self, "_fit_where", where)
            if where != fitted:
                raise ValueError(
                    f"{type(self).__name__}.{method}(): X must use the same namespace and device "
                    f"as the data given to fit under array-API dispatch: fitted on {fitted[0]} "
                    f"({fitted[1]}), got {where[0]} ({where[1]})"
                )
        X = self._validate_X(X, reset=False)
        return predict(model, self._on(model.backend, X), batch_size=1024)

    # -- pickling: the network travels as coefs_ / intercepts_ -----------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state = dict(state)
        state["_model"] = None
        state["_optimizer"] = None
        return state


_FLOATS = (np.float64, np.float32)


def _dense(model: Sequential) -> list[Dense]:
    return [layer for layer in model if isinstance(layer, Dense)]


def _where(x: Any) -> tuple[str, str]:
    """(library, device) of an array: ("numpy", "cpu") for host data."""
    be = _library(x)
    return ("numpy", "cpu") if be is None else (be.name, str(be.device))


def column(y: Any) -> Any:
    """y (n,) as a column (n, 1), a host array or an array of a device library."""
    be = _library(y)
    return y.reshape(-1, 1) if be is None else be.xp.reshape(y, (-1, 1))


def rows(a: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a host array or of an array of a device library."""
    be = _library(a)
    if be is None:
        return a[idx]
    return be.xp.take(a, be.asarray(idx), axis=0)


def host_array(a: Any) -> np.ndarray:
    """A host NumPy view or copy of a host array or an array of a device library."""
    be = _library(a)
    return np.asarray(a) if be is None else np.asarray(be.to_host(a))


def sample_weights(sample_weight: Any, n: int, whose: str) -> np.ndarray | None:
    """``sample_weight`` (None, a number or an array (n,)) as a float64 host array, with
    scikit-learn's messages for the faults its checks look for."""
    if sample_weight is None:
        return None
    w = host_array(sample_weight).astype(np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(f"{whose}: sample_weight must have shape ({n},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{whose}: sample_weight must be finite")
    if np.any(w < 0):
        raise ValueError(f"{whose}: Negative values in data passed to `sample_weight`")
    if not np.any(w > 0):
        raise ValueError(
            f"{whose}: Sample weights must contain at least one non-zero number (all are 0)"
        )
    return w
