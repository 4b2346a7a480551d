"""Every sampler's output is the one recorded before the samplers became solver
modules (tests/regression/samplers.py), to rounding in float64."""

import numpy as np
import pytest

from .regression import samplers as recorded


RECORDED = np.load(recorded.FILE)
CONFIGURATIONS = recorded.configurations()


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_sampler_output_is_unchanged(name):
    got = recorded.flatten(CONFIGURATIONS[name]())
    expected = {
        key.split("/")[1]: RECORDED[key]
        for key in RECORDED.files
        if key.split("/")[0] == name
    }
    assert set(got) == set(expected)
    for field, value in expected.items():
        assert got[field].dtype == value.dtype, field
        if field == "num_evaluations":
            assert got[field] == value
        else:
            np.testing.assert_allclose(got[field], value, rtol=1e-12, atol=1e-12)
