"""What every sampler returns."""

import equinox as eqx
from jaxtyping import Array, Float, Int


class SampleResult(eqx.Module):
    r"""What a sampler returns for one sample.

    Under `jax.vmap` every field gains a leading batch axis (each sample reports
    its own number of model evaluations, which differs between samples only for
    adaptive step-size controllers).

    **Fields:**

    - `sample`: the final sample, shaped like the starting point.
    - `num_evaluations`: how many times the model was called (for the
      likelihood, how many times the vector field and its divergence were
      evaluated), counting rejected adaptive steps and the final denoising step.
    - `trajectory`: with `trajectory=True`, the states visited, first the starting
      point; otherwise `None`. It holds the chain before any final denoising step.
    - `times`: the time of each state of `trajectory` (on the sampler's own time
      axis, see each sampler), or `None`.
    """

    sample: Float[Array, "*shape"]
    num_evaluations: Int[Array, ""]
    trajectory: Float[Array, " num_saved *shape"] | None = None
    times: Float[Array, " num_saved"] | None = None
