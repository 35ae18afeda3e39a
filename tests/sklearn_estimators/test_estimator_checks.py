"""scikit-learn's own estimator checks (``parametrize_with_checks``) on both estimators.

The checks expected to fail are listed in :data:`EXPECTED_FAILURES` with their reasons (and in
docs/sklearn.md); everything else must pass. Small networks and few epochs keep this quick.
"""

from __future__ import annotations

import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from arrayprop.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

#: check name -> why it is expected to fail (docs/sklearn.md lists the same).
EXPECTED_FAILURES = {}

ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0),
    MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0),
]


def expected_failed_checks(estimator):
    return EXPECTED_FAILURES


pytestmark = pytest.mark.filterwarnings(
    f"ignore::{ConvergenceWarning.__module__}.ConvergenceWarning"
)


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
