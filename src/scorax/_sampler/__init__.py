from ._by_name import (
    get_sampler as get_sampler,
    sampler_table as sampler_table,
    SamplerEntry as SamplerEntry,
)
from ._consistency import (
    consistency_sample as consistency_sample,
    ConsistencySampler as ConsistencySampler,
    teacher_step as teacher_step,
    TeacherMethod as TeacherMethod,
)
from ._ddpm import ddim_sample as ddim_sample, ddpm_sample as ddpm_sample
from ._dpm import dpm_solver_sample as dpm_solver_sample
from ._dpm_pp import dpm_solver_pp_sample as dpm_solver_pp_sample
from ._edm import edm_sample as edm_sample
from ._grid import rho_interpolate as rho_interpolate
from ._langevin import annealed_langevin as annealed_langevin, langevin as langevin
from ._pc import predictor_corrector_sample as predictor_corrector_sample
from ._result import SampleResult as SampleResult
from ._sde import (
    probability_flow_sample as probability_flow_sample,
    reverse_sde_sample as reverse_sde_sample,
)
