"""[`fit`][scorax.fit] and what it returns; the rest of the package is private to
it: the training state (`_state`), the checkpoint format (`_checkpoint`), the data
feeds (`_feed`), the compiled steps (`_step`), the host loop (`_loop`) and what
the processes of a run tell one another (`_collectives`)."""

from ._fit import fit as fit, FitResult as FitResult
