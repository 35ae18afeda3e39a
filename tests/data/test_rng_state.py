"""The shuffler's state (``data.rng_state`` / ``data.rng_from_state``) survives JSON for every
NumPy bit generator, so a resumed fit draws the same orders.
"""

from __future__ import annotations

import numpy as np
import pytest

import arrayprop as ap


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "SFC64", "Philox"])
def test_shuffler_state_survives_json(bit_generator):
    import json

    rng = np.random.Generator(getattr(np.random, bit_generator)(42))
    rng.permutation(10)
    state = json.loads(json.dumps(ap.data.rng_state(rng), allow_nan=False))
    again = ap.data.rng_from_state(state)
    np.testing.assert_array_equal(again.permutation(1000), rng.permutation(1000))
