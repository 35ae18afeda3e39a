"""``MLPRegressor``: scikit-learn's estimator interface over an arrayprop network, trained by
:func:`arrayprop.fit` on the backend the data lives on. See docs/sklearn.md."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from arrayprop.nn.losses import L2Loss
from arrayprop.sklearn.base import BaseMLP, column, host_array, rows, sample_weights

__all__ = ["MLPRegressor"]


class MLPRegressor(RegressorMixin, BaseMLP):
    """A multi-layer perceptron regressor with scikit-learn's interface, trained by arrayprop.

    The hyper-parameters are :class:`~arrayprop.sklearn.MLPClassifier`'s without
    ``class_weight``. The loss is ½‖y − t‖² averaged over the samples (``L2Loss("mean")``,
    scikit-learn's squared error), the output layer linear; ``predict`` returns shape
    (n_samples,) for a one-column target, as scikit-learn does. The early-stopping score is R².
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train on (X, y), y of shape (n_samples,) or (n_samples, n_outputs), for up to
        ``max_iter`` epochs; ``sample_weight`` as for :meth:`MLPClassifier.fit`."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over (X, y), continuing from the current weights and solver state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _fit(self, X: Any, y: Any, sample_weight: Any, *, incremental: bool) -> MLPRegressor:
        first = not (incremental and hasattr(self, "coefs_"))
        X, y = self._validate_X(X, y, reset=first, with_y=True, multi_output=True, y_numeric=True)
        n = X.shape[0]
        w = sample_weights(sample_weight, n, type(self).__name__)
        target = rows(y, np.arange(n)) if y.ndim == 2 else column(y)
        n_out = target.shape[1]
        if not first and n_out != self.n_outputs_:
            raise ValueError(
                f"{type(self).__name__}: y has {n_out} outputs, the network {self.n_outputs_}"
            )
        self.n_outputs_ = n_out
        self.out_activation_ = "identity"
        validation = None
        if self.early_stopping and not incremental:
            i_tr, i_val = self._split(n, None)
            validation = (
                rows(X, i_val),
                host_array(rows(target, i_val)),
                None if w is None else w[i_val],
            )
            X, target = rows(X, i_tr), rows(target, i_tr)
            w = None if w is None else w[i_tr]
        self._train(
            X, target, w, n_out, L2Loss("mean"), incremental=incremental, validation=validation
        )
        return self

    def validation_score(self, X: Any, y: np.ndarray, sample_weight: Any) -> float:
        """R² on held-out (X, y) (weighted by ``sample_weight``)."""
        return float(r2_score(y, self._host_outputs(X), sample_weight=sample_weight))

    def predict(self, X: Any) -> Any:
        """Predictions, shape (n_samples,) for one output, else (n_samples, n_outputs); the same
        kind of array as X (a device library's under array-API dispatch or ``backend``)."""
        out = self._outputs(X, "predict")
        if out.shape[1] == 1:
            out = self._model.backend.xp.reshape(out, (-1,))
        return self._handback(X, out)
