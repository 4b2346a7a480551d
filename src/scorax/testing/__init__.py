r"""`scorax.testing`: the property-based verification kit scorax is tested with,
for your own paths, parameterisations, objectives, estimators and samplers.

- Hypothesis strategies: [`times`][scorax.testing.times],
  [`gaussian_paths`][scorax.testing.gaussian_paths],
  [`gaussian_mixtures`][scorax.testing.gaussian_mixtures],
  [`parameterisations`][scorax.testing.parameterisations],
  [`dtypes`][scorax.testing.dtypes].
- The exact oracle as a model: [`ExactModel`][scorax.testing.ExactModel], and
  as a consistency function:
  [`ExactConsistencyModel`][scorax.testing.ExactConsistencyModel].
- Checks that raise an `AssertionError` with a readable report:
  [`check_path`][scorax.testing.check_path],
  [`check_parameterisation_roundtrip`][scorax.testing.check_parameterisation_roundtrip],
  [`check_objective_minimiser`][scorax.testing.check_objective_minimiser],
  [`check_unbiased`][scorax.testing.check_unbiased],
  [`check_sampler`][scorax.testing.check_sampler] (which returns a
  [`SamplerCheck`][scorax.testing.SamplerCheck] with its detectable effect) and
  [`check_evaluation_count`][scorax.testing.check_evaluation_count].

Thresholds come from machine epsilon (deterministic identities) or from standard
errors (statistical ones, at 5 by default), and every key is fixed, so a check
gives the same answer on every run. The strategies need Hypothesis, an optional
extra: `pip install "scorax[testing]"`. `import scorax` never imports this module.
"""

try:
    import hypothesis as _hypothesis  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "scorax.testing needs Hypothesis, an optional extra of scorax: "
        'pip install "scorax[testing]"'
    ) from error

from ._exact import (
    ExactConsistencyModel as ExactConsistencyModel,
    ExactModel as ExactModel,
)
from ._path_checks import (
    check_parameterisation_roundtrip as check_parameterisation_roundtrip,
    check_path as check_path,
)
from ._statistical_checks import (
    check_evaluation_count as check_evaluation_count,
    check_objective_minimiser as check_objective_minimiser,
    check_sampler as check_sampler,
    check_unbiased as check_unbiased,
    SamplerCheck as SamplerCheck,
)
from ._strategies import (
    dtypes as dtypes,
    gaussian_mixtures as gaussian_mixtures,
    gaussian_paths as gaussian_paths,
    parameterisations as parameterisations,
    times as times,
)


__all__ = [
    "ExactConsistencyModel",
    "ExactModel",
    "SamplerCheck",
    "check_evaluation_count",
    "check_objective_minimiser",
    "check_parameterisation_roundtrip",
    "check_path",
    "check_sampler",
    "check_unbiased",
    "dtypes",
    "gaussian_mixtures",
    "gaussian_paths",
    "parameterisations",
    "times",
]
