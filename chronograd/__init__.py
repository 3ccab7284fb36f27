"""chronograd: differentiable molecular simulation in JAX.

Importing chronograd enables JAX's 64-bit mode: validation is done in float64 (as OpenMM's
Reference platform does); pass float32 arrays to compute in single precision.
"""

import jax

jax.config.update("jax_enable_x64", True)

from chronograd import dynamics, gradients, observables  # noqa: E402
from chronograd.dynamics.runner import SimulationError, simulate  # noqa: E402
from chronograd.errors import (  # noqa: E402
    ChronogradError,
    InputError,
    SchemaError,
    UnsupportedForceError,
)
from chronograd.forcefield import ForceField  # noqa: E402
from chronograd.interop.openmm import from_openmm, to_openmm  # noqa: E402
from chronograd.minimize import minimize  # noqa: E402
from chronograd.system import (  # noqa: E402
    System,
    forces_fn,
    hessian_fn,
    hessian_vector_product_fn,
    mix_sources,
    mixed_jvp_fn,
    mixed_vjp_fn,
    param_gradient_fn,
    stack_systems,
)
from chronograd.system.particles import particle_system  # noqa: E402
from chronograd.system.serialize import load, save  # noqa: E402
from chronograd.topology import Molecule  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ChronogradError",
    "ForceField",
    "InputError",
    "Molecule",
    "SchemaError",
    "SimulationError",
    "System",
    "UnsupportedForceError",
    "forces_fn",
    "dynamics",
    "gradients",
    "observables",
    "from_openmm",
    "hessian_fn",
    "hessian_vector_product_fn",
    "load",
    "minimize",
    "mix_sources",
    "mixed_jvp_fn",
    "mixed_vjp_fn",
    "param_gradient_fn",
    "particle_system",
    "save",
    "simulate",
    "stack_systems",
    "to_openmm",
]
