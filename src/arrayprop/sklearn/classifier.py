"""``MLPClassifier``: scikit-learn's estimator interface over an arrayprop network, trained by
:func:`arrayprop.fit` on the backend the data lives on. See docs/sklearn.md."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets

from arrayprop.nn.losses import BinaryCrossEntropy, SoftmaxCrossEntropy
from arrayprop.sklearn.base import BaseMLP, host_array, rows, sample_weights

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierMixin, BaseMLP):
    """A multi-layer perceptron classifier with scikit-learn's interface, trained by arrayprop.

    Hyper-parameters are named as in ``sklearn.neural_network.MLPClassifier`` where they
    overlap (``hidden_layer_sizes``, ``activation``, ``solver`` ("adam" or "sgd"), ``alpha``,
    ``batch_size``, ``learning_rate_init``, ``max_iter``, ``shuffle``, ``random_state``,
    ``tol``, ``verbose``, ``warm_start``, ``momentum``, ``nesterovs_momentum``,
    ``early_stopping``, ``validation_fraction``, ``beta_1``, ``beta_2``, ``epsilon``,
    ``n_iter_no_change``), plus:

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        Weights of the classes, multiplied into ``sample_weight`` (``"balanced"``:
        n_samples / (n_classes · count of the class)).
    dropout : float
        Dropout probability after each hidden activation (0: none).
    backend : str, optional
        ``"numpy"``, ``"torch"``, ``"cupy"``, ``"jax"``, ``"array_api_strict"``: train there
        whatever the input. Default: the input's library under
        ``sklearn.set_config(array_api_dispatch=True)``, else NumPy.
    device : str, optional
        The device for ``backend`` (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
    dtype : "float64" or "float32"
        The network's float type.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    coefs_, intercepts_ : list of ndarray
        Host copies of the weights (in_features, out_features) and biases of each layer.
    loss_, best_loss_, loss_curve_, n_iter_, t_, n_layers_, n_outputs_, out_activation_,
    validation_scores_, best_validation_score_, n_features_in_, feature_names_in_
        As scikit-learn's.

    Notes
    -----
    A binary problem has one logistic output (binary cross-entropy), more classes a softmax
    (cross-entropy), as in scikit-learn.
    """

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
        class_weight: Any = None,
        dropout: float = 0.0,
        backend: str | None = None,
        device: Any = None,
        dtype: str = "float64",
    ) -> None:
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            dropout=dropout,
            backend=backend,
            device=device,
            dtype=dtype,
        )
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Train on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array, shape (n_samples, n_features)
            NumPy data, or an array of torch / CuPy / ... (see ``backend``).
        y : array, shape (n_samples,)
            Class labels (numbers or strings).
        sample_weight : array, shape (n_samples,), optional
            Non-negative weights (eq. 15a of docs/math.md).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, classes=None, incremental=False)

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> MLPClassifier:
        """One epoch over (X, y), continuing from the current weights and solver state.

        ``classes`` (every label that will ever appear) is required on the first call.
        """
        return self._fit(X, y, sample_weight, classes=classes, incremental=True)

    def _fit(
        self, X: Any, y: Any, sample_weight: Any, *, classes: Any, incremental: bool
    ) -> MLPClassifier:
        first = not (incremental and hasattr(self, "classes_"))
        X, y = self._validate_X(X, y, reset=first, with_y=True, multi_output=False)
        labels = host_array(y)
        check_classification_targets(labels)
        name = type(self).__name__
        if incremental and first:
            if classes is None:
                raise ValueError(f"{name}: classes must be passed on the first call to partial_fit")
            self.classes_ = np.unique(np.asarray(classes))
        elif not incremental:
            found = np.unique(labels)
            if (
                self.warm_start
                and hasattr(self, "classes_")
                and not np.array_equal(found, self.classes_)
            ):
                raise ValueError(
                    f"{name}: warm_start can only be used where y has the same classes as in the "
                    f"previous call to fit; previously {self.classes_}, now {found}"
                )
            self.classes_ = found
        unknown = np.setdiff1d(labels, self.classes_)
        if unknown.size:
            raise ValueError(f"{name}: y holds labels {unknown} not in classes {self.classes_}")
        if self.classes_.shape[0] < 2:
            raise ValueError(
                f"{name}: y holds one class ({self.classes_[0]!r}); a classifier needs samples "
                "of at least 2 classes"
            )
        encoded = np.searchsorted(self.classes_, labels)
        w = _weights(sample_weight, labels, self.class_weight, name)
        binary = self.classes_.shape[0] == 2
        self.n_outputs_ = 1 if binary else self.classes_.shape[0]
        self.out_activation_ = "logistic" if binary else "softmax"
        loss = BinaryCrossEntropy(from_logits=True) if binary else SoftmaxCrossEntropy()
        target = encoded.astype(np.float64)[:, None] if binary else encoded.astype(np.int64)
        validation = None
        if self.early_stopping and not incremental:
            i_tr, i_val = self._split(X.shape[0], labels)
            w_val = None if w is None else w[i_val]
            validation = (rows(X, i_val), labels[i_val], w_val)
            X, target = rows(X, i_tr), target[i_tr]
            w = None if w is None else w[i_tr]
        self._train(
            X, target, w, self.n_outputs_, loss, incremental=incremental, validation=validation
        )
        return self

    def validation_score(self, X: Any, y: np.ndarray, sample_weight: Any) -> float:
        """Accuracy on held-out (X, y) (weighted by ``sample_weight``)."""
        return float(np.average(self._host_labels(X) == y, weights=sample_weight))

    def _host_labels(self, X: Any) -> np.ndarray:
        out = self._host_outputs(X)
        idx = (out[:, 0] > 0).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)
        return self.classes_[idx]

    def predict(self, X: Any) -> Any:
        """Class labels, shape (n_samples,): a NumPy array, or for an array of a device library
        under array-API dispatch (or ``backend``) an array of that library when the labels are
        numbers."""
        out = self._outputs(X, "predict")
        xp = self._model.backend.xp
        idx = xp.astype(out[:, 0] > 0, xp.int64) if out.shape[1] == 1 else xp.argmax(out, axis=1)
        host = self._model.backend.to_host(idx)
        native = self._native(X)
        if native is None or self.classes_.dtype.kind not in "biuf":
            return self.classes_[host]
        return native.xp.take(native.asarray(self.classes_), native.asarray(host), axis=0)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities, shape (n_samples, n_classes), columns in the order of
        ``classes_``; the same kind of array as X (see :meth:`predict`)."""
        return self._proba(X, "predict_proba")

    def _proba(self, X: Any, method: str) -> Any:
        out = self._outputs(X, method)
        xp = self._model.backend.xp
        if out.shape[1] == 1:
            p = 1.0 / (1.0 + xp.exp(-out))
            proba = xp.concat([1.0 - p, p], axis=1)
        else:
            e = xp.exp(out - xp.max(out, axis=1, keepdims=True))
            proba = e / xp.sum(e, axis=1, keepdims=True)
        return self._handback(X, proba)

    def predict_log_proba(self, X: Any) -> Any:
        """The logarithm of :meth:`predict_proba`."""
        proba = self._proba(X, "predict_log_proba")
        native = self._native(X)
        xp = np if native is None else native.xp
        return xp.log(proba)


def _weights(sample_weight: Any, labels: np.ndarray, class_weight: Any, name: str) -> Any:
    """sample_weight times the class weights, as a float64 host array; None if neither."""
    w = sample_weights(sample_weight, labels.shape[0], name)
    if class_weight is not None:
        cw = compute_sample_weight(class_weight, labels)
        w = cw if w is None else w * cw
    return w
