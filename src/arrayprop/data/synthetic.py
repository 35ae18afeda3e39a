"""Synthetic data sets of :mod:`arrayprop.data`: spirals, XOR, linear and logistic regression.

NumPy only, each reproducible from its ``seed``; import these from :mod:`arrayprop.data`.
"""

from __future__ import annotations

import numpy as np

from arrayprop.random import Seed, host_rng
from arrayprop.validation import NON_NEGATIVE, POSITIVE_INT, check

#: What the arguments of the generators here may be (:func:`arrayprop.validation.check`).
ARGUMENTS = {
    "n": POSITIVE_INT,
    "classes": POSITIVE_INT,
    "features": POSITIVE_INT,
    "noise": NON_NEGATIVE,
}


def _checked(whose: str, **values: object) -> list:
    """The values of ``whose``'s arguments, each checked against :data:`ARGUMENTS`."""
    return [check(whose, name, value, ARGUMENTS[name]) for name, value in values.items()]


def make_spirals(
    n: int = 300, classes: int = 3, noise: float = 0.2, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved 2-D spirals, one arm per class (not linearly separable).

    Each arm has points at radii evenly spaced in [0, 1]; the angle of class
    ``k`` runs over ``[4k, 4(k + 1)]`` radians plus Gaussian jitter of
    standard deviation ``noise``.

    Parameters
    ----------
    n : int, default 300
        Total number of points; class ``k`` gets ``n // classes`` points,
        plus one for the first ``n % classes`` classes.
    classes : int, default 3
        Number of classes (spiral arms), at least 1.
    noise : float, default 0.2
        Standard deviation of the angular jitter, in radians.
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, 2)``, inside the unit disc.
    y : numpy.ndarray
        int64 of shape ``(n,)`` with values ``0 .. classes - 1``.
        The points are shuffled (not grouped by class).
    """
    n, classes, noise = _checked("make_spirals", n=n, classes=classes, noise=noise)
    rng = host_rng(seed)
    sizes = [n // classes + (1 if k < n % classes else 0) for k in range(classes)]
    xs = []
    ys = []
    for k, m in enumerate(sizes):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(4.0 * k, 4.0 * (k + 1), m) + noise * rng.standard_normal(m)
        xs.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        ys.append(np.full(m, k, dtype=np.int64))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys)
    perm = rng.permutation(n)
    return x[perm], y[perm]


def make_xor(n: int = 200, noise: float = 0.1, seed: Seed = 0) -> tuple[np.ndarray, np.ndarray]:
    """The XOR problem: four Gaussian blobs at the corners ``(±0.5, ±0.5)``.

    The label of each point is the XOR of the signs of its two coordinates,
    computed from the returned (noisy) coordinates, so
    ``y == ((x[:, 0] > 0) != (x[:, 1] > 0))`` always holds exactly.

    Parameters
    ----------
    n : int, default 200
        Number of points.
    noise : float, default 0.1
        Standard deviation of the Gaussian blobs around the corners. Larger
        values move more points close to the axes (the decision boundary).
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, 2)``.
    y : numpy.ndarray
        int64 of shape ``(n,)``: 1 where exactly one coordinate is positive,
        else 0.
    """
    n, noise = _checked("make_xor", n=n, noise=noise)
    rng = host_rng(seed)
    corners = rng.choice(np.array([-0.5, 0.5]), size=(n, 2))
    x = (corners + noise * rng.standard_normal((n, 2))).astype(np.float32)
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(np.int64)
    return x, y


def make_linear_regression(
    n: int = 200, features: int = 3, noise: float = 0.1, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A linear regression problem ``y = x @ true_w + true_b + noise``.

    Parameters
    ----------
    n : int, default 200
        Number of samples.
    features : int, default 3
        Number of input features.
    noise : float, default 0.1
        Standard deviation of the Gaussian noise added to ``y``.
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, features)``, standard normal.
    y : numpy.ndarray
        float32 of shape ``(n, 1)``.
    true_w : numpy.ndarray
        float32 of shape ``(features, 1)``, the weights used (standard normal).
    true_b : numpy.ndarray
        float32 of shape ``(1,)``, the bias used (standard normal).
    """
    n, features, noise = _checked("make_linear_regression", n=n, features=features, noise=noise)
    rng = host_rng(seed)
    true_w = rng.standard_normal((features, 1))
    true_b = rng.standard_normal(1)
    x = rng.standard_normal((n, features))
    y = x @ true_w + true_b + noise * rng.standard_normal((n, 1))
    f32 = np.float32
    return x.astype(f32), y.astype(f32), true_w.astype(f32), true_b.astype(f32)


def make_logistic_regression(
    n: int = 200, features: int = 2, seed: Seed = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A binary classification problem that is nearly linearly separable.

    A random unit vector ``w`` and offset ``b`` define the hyperplane
    ``x @ w + b = 0``; each label is drawn from a Bernoulli distribution with
    probability ``sigmoid(8 * (x @ w + b))``, so labels are almost always
    the side of the hyperplane, with a few flips close to it.

    Parameters
    ----------
    n : int, default 200
        Number of samples.
    features : int, default 2
        Number of input features.
    seed : int, numpy.random.Generator or None, default 0
        Random seed.

    Returns
    -------
    x : numpy.ndarray
        float32 of shape ``(n, features)``, standard normal.
    y : numpy.ndarray
        int64 of shape ``(n,)`` with values 0 and 1.
    """
    n, features = _checked("make_logistic_regression", n=n, features=features)
    rng = host_rng(seed)
    w = rng.standard_normal(features)
    w /= np.linalg.norm(w)
    b = 0.25 * rng.standard_normal()
    x = rng.standard_normal((n, features))
    p = 1.0 / (1.0 + np.exp(-8.0 * (x @ w + b)))
    y = (rng.random(n) < p).astype(np.int64)
    return x.astype(np.float32), y
