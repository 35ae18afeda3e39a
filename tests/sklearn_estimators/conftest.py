"""The tests of arrayprop/sklearn (this folder is not named tests/sklearn: with tests/ on the
path, that name would make ``import sklearn`` find this folder where scikit-learn is missing).

scikit-learn's array-API checks run only with SciPy's array-API mode, which SciPy reads when it
is first imported: set it before any test module imports scikit-learn (and so SciPy).
"""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")
