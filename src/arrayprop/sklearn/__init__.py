"""scikit-learn estimators over arrayprop: :class:`MLPClassifier` and :class:`MLPRegressor`.

Needs scikit-learn (``pip install arrayprop[sklearn]``); nothing else in arrayprop imports it.
See docs/sklearn.md.
"""

from arrayprop.sklearn.classifier import MLPClassifier
from arrayprop.sklearn.regressor import MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
