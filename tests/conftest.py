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


@pytest.fixture
def key():
    return jr.key(0)
