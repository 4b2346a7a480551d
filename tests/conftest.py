"""Test-wide configuration: float64 and strict rank promotion, the Hypothesis
profiles, the `key` fixture and the `slow` marker.

Tests marked `@pytest.mark.slow` (each above about 8 s on two CPU cores) still
run by default and in CI; `pytest -m "not slow"` leaves them out for a fast
everyday subset."""

import os

import jax
import jax.random as jr
import pytest
from hypothesis import HealthCheck, settings


# float64 is available to every test; each test says which dtype it runs in and
# checks that float32 inputs stay float32.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "ci",
    derandomize=True,  # reproducible in CI: the same examples on every run
    # Most property tests are parametrised over every path (in alternating
    # precisions), so 10 examples per combination is 90 draws of one identity;
    # the suite is bound by compiling each drawn shape, not by the draws.
    max_examples=10,
    deadline=None,  # the first call of a shape compiles
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: above about 8 s on two CPU cores; still run by default and in CI, "
        'left out by -m "not slow"',
    )


@pytest.fixture
def key():
    return jr.key(0)
