"""arrayprop.sklearn beyond scikit-learn's common checks: what the estimators promise.

Sample and class weights (a weight of 2 is the sample twice), partial_fit, string labels,
scikit-learn's L2 penalty, early stopping, dropout, array-API dispatch (torch in, torch out,
trained on torch), Pipeline / GridSearchCV / clone, and pickling of a fitted estimator.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import config_context
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from arrayprop.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def blobs():
    x, y = make_classification(60, 6, n_informative=4, n_classes=3, random_state=0)
    return StandardScaler().fit_transform(x), y


@pytest.fixture(scope="module")
def reg():
    x, y = make_regression(50, 5, noise=0.1, random_state=0)
    return x, y / y.std()


def small(cls, **kw):
    args = {"hidden_layer_sizes": (8,), "max_iter": 20, "random_state": 0, "tol": 0.0}
    return cls(**{**args, **kw})


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_a_weight_of_two_is_the_sample_twice(blobs, reg, cls, solver):
    """Full batch, no shuffling, float64, with the L2 penalty: exactly the duplicated data."""
    x, y = blobs if cls is MLPClassifier else reg
    counts = np.arange(len(y)) % 3  # 0, 1 and 2
    rows = np.repeat(np.arange(len(y)), counts)
    kw = {"batch_size": 1000, "shuffle": False, "solver": solver, "alpha": 0.01}
    a = small(cls, **kw).fit(x, y, sample_weight=counts)
    b = small(cls, **kw).fit(x[rows], y[rows])
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)


def test_class_weight_is_a_sample_weight_per_class(blobs):
    x, y = blobs
    kw = {"batch_size": 1000, "shuffle": False}
    a = small(MLPClassifier, class_weight={0: 3.0, 1: 1.0, 2: 0.5}, **kw).fit(x, y)
    b = small(MLPClassifier, **kw).fit(x, y, sample_weight=np.array([3.0, 1.0, 0.5])[y])
    np.testing.assert_allclose(a.coefs_[0], b.coefs_[0], rtol=1e-12)
    balanced = small(MLPClassifier, class_weight="balanced", **kw).fit(x[:40], y[:40])
    counts = np.bincount(y[:40])
    w = (40 / (3 * counts))[y[:40]]
    c = small(MLPClassifier, **kw).fit(x[:40], y[:40], sample_weight=w)
    np.testing.assert_allclose(balanced.coefs_[0], c.coefs_[0], rtol=1e-12)


def test_string_labels_probabilities_and_attributes(blobs):
    x, y = blobs
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = small(MLPClassifier, max_iter=60, learning_rate_init=0.02).fit(x, labels)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert set(clf.predict(x)) <= set(clf.classes_)
    assert clf.score(x, labels) > 0.8
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.log(proba), clf.predict_log_proba(x))
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(x))
    assert [w.shape for w in clf.coefs_] == [(6, 8), (8, 3)]
    assert isinstance(clf.coefs_[0], np.ndarray) and clf.n_iter_ == 60 == len(clf.loss_curve_)
    assert clf.n_features_in_ == 6 and clf.t_ == 60 * len(y) and clf.n_layers_ == 3


def test_binary_problems_have_one_logistic_output(blobs):
    x, y = blobs
    clf = small(MLPClassifier).fit(x, y == 1)
    assert clf.out_activation_ == "logistic" and clf.coefs_[-1].shape == (8, 1)
    assert clf.predict_proba(x).shape == (len(y), 2)


def test_partial_fit_is_one_epoch_each_and_needs_the_classes(blobs):
    x, y = blobs
    clf = small(MLPClassifier)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:30], y[:30], classes=[0, 1, 2])
    clf.partial_fit(x[30:], y[30:])
    assert clf.n_iter_ == 2 and clf.t_ == len(y)
    # One partial_fit per epoch over the same data in order equals fit, epoch for epoch.
    kw = {"shuffle": False, "batch_size": 16}
    a = small(MLPClassifier, max_iter=3, **kw).fit(x, y)
    b = small(MLPClassifier, **kw)
    for _ in range(3):
        b.partial_fit(x, y, classes=[0, 1, 2])
    np.testing.assert_allclose(a.coefs_[1], b.coefs_[1], rtol=1e-12)
    with pytest.raises(ValueError, match="not in classes"):
        b.partial_fit(x[:3], np.array([0, 1, 7]))


def test_alpha_is_scikit_learns_penalty(reg):
    """Full batch, plain SGD, one epoch: W ← W − η (∂C/∂W + α W / n) exactly."""
    x, y = reg
    kw = {"solver": "sgd", "momentum": 0.0, "batch_size": 1000, "max_iter": 1}
    plain = small(MLPRegressor, alpha=0.0, **kw).fit(x, y)
    pen = small(MLPRegressor, alpha=0.5, **kw).fit(x, y)
    w0 = small(MLPRegressor, learning_rate_init=1e-300, **kw).fit(x, y).coefs_  # the start
    lr, n = 0.001, len(y)
    for wp, wq, w in zip(plain.coefs_, pen.coefs_, w0, strict=True):
        np.testing.assert_allclose(wq, wp - lr * 0.5 * w / n, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(pen.intercepts_[0], plain.intercepts_[0], rtol=1e-12)


def test_stops_when_the_loss_stops_improving(reg):
    x, y = reg
    est = small(MLPRegressor, max_iter=500, tol=10.0, n_iter_no_change=3).fit(x, y)
    assert est.n_iter_ == 5  # 1 best, then 4 > n_iter_no_change epochs without a gain of tol


def test_early_stopping_keeps_the_best_validation_score(blobs):
    x, y = blobs
    est = small(MLPClassifier, early_stopping=True, max_iter=200, n_iter_no_change=2, tol=1e-4)
    est.fit(x, y)
    assert est.n_iter_ < 200 and len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    with pytest.raises(ValueError, match="early stopping needs 2"):
        small(MLPRegressor, early_stopping=True, validation_fraction=0.01).fit(x[:30], y[:30])


def test_dropout_trains_and_predicts_deterministically(blobs):
    x, y = blobs
    est = small(MLPClassifier, dropout=0.3).fit(x, y)
    assert np.array_equal(est.predict_proba(x), est.predict_proba(x))
    assert not np.allclose(est.coefs_[0], small(MLPClassifier).fit(x, y).coefs_[0])


@pytest.mark.parametrize(
    "bad",
    [
        {"solver": "lbfgs"},
        {"alpha": -1.0},
        {"hidden_layer_sizes": (0,)},
        {"batch_size": 0},
        {"dropout": 1.0},
        {"backend": "nope"},
    ],
)
def test_bad_hyperparameters_are_refused(blobs, bad):
    x, y = blobs
    with pytest.raises(ValueError, match="MLPClassifier: "):
        small(MLPClassifier, **bad).fit(x, y)


def test_pipeline_grid_search_clone_and_pickle(blobs):
    x, y = blobs
    pipe = make_pipeline(StandardScaler(), small(MLPClassifier, max_iter=10))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2).fit(x, y)
    assert grid.best_params_["mlpclassifier__alpha"] in (1e-4, 1e-1)
    fitted = grid.best_estimator_
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict_proba(x), fitted.predict_proba(x))
    mlp = back[-1]
    mlp.partial_fit(x, y)  # trains on after unpickling (the solver state starts afresh)
    assert clone(mlp).get_params() == mlp.get_params()


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_torch_input_trains_on_torch_and_returns_torch(blobs, reg, cls):
    torch = pytest.importorskip("torch")
    x, y = blobs if cls is MLPClassifier else reg
    xt, yt = torch.asarray(x), torch.asarray(y)
    with config_context(array_api_dispatch=True):
        est = small(cls).fit(xt, yt)
        pred = est.predict(xt)
    assert isinstance(pred, torch.Tensor)
    assert est._model.backend.name == "torch"
    ref = small(cls).fit(x, y)
    np.testing.assert_allclose(pred.numpy(), ref.predict(x), rtol=1e-6, atol=1e-8)
    # Without dispatch, torch input is host data to scikit-learn: NumPy comes back.
    plain = small(cls).fit(xt, yt)
    assert isinstance(plain.predict(xt), np.ndarray)
    # backend= asks for torch whatever the input; NumPy in, NumPy out.
    forced = small(cls, backend="torch").fit(x, y)
    assert forced._model.backend.name == "torch"
    assert isinstance(forced.predict(x), np.ndarray)
    assert isinstance(forced.predict(xt), torch.Tensor)


def test_maximum_iterations_warn_as_scikit_learn_does(blobs):
    x, y = blobs
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(20\) reached"):
        small(MLPClassifier).fit(x, y)
