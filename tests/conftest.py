"""Test-wide configuration: float64 and strict rank promotion, the Hypothesis
profiles, the `key` fixture and the `slow` marker.

Tests marked `@pytest.mark.slow` (each above about 8 s on two CPU cores) still
run by default and in CI; `pytest -m "not slow"` leaves them out for a fast
everyday subset."""

import os
import pathlib

import jax
import jax.random as jr
import pytest
from hypothesis import HealthCheck, settings


# float64 is available to every test; each test says which dtype it runs in and
# checks that float32 inputs stay float32.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# One persistent compilation cache for the whole run: the xdist workers, and the
# subprocesses the tests start (examples, the command line, several processes),
# which inherit the environment variables. The suite is bound by compiling, and
# many programs recur: the same eager operations in each process, the same
# programs built by different closures (a cache keyed by the program, not by the
# Python function). Kept in .pytest_cache between local runs (a warm cache makes
# a rerun about 3x faster; delete the folder to reclaim its space).
# Entries are keyed by the program, the compile options and the versions of jax
# and jaxlib, so a stale entry is never used.
CACHE = pathlib.Path(__file__).parent.parent / ".pytest_cache" / "jax-compilation"
for name, value in (
    ("JAX_COMPILATION_CACHE_DIR", str(CACHE)),
    ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
    ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0"),
):
    os.environ.setdefault(name, value)
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

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
