"""Systems: static energy terms plus parameter pytrees, and their derivatives."""

from chronograd.system.batch import SystemBatch, stack_systems
from chronograd.system.derivatives import (
    forces_fn,
    hessian_fn,
    hessian_vector_product_fn,
    mixed_jvp_fn,
    mixed_vjp_fn,
    param_gradient_fn,
)
from chronograd.system.mixed_source import MixedSource, mix_sources
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.system import System
from chronograd.system.terms import (
    FunctionTerm,
    HarmonicAngleTerm,
    HarmonicBondTerm,
    MorseBondTerm,
    PeriodicTorsionTerm,
)

__all__ = [
    "FunctionTerm",
    "HarmonicAngleTerm",
    "HarmonicBondTerm",
    "MixedSource",
    "MorseBondTerm",
    "NonbondedTerm",
    "PeriodicTorsionTerm",
    "System",
    "SystemBatch",
    "forces_fn",
    "hessian_fn",
    "hessian_vector_product_fn",
    "mixed_jvp_fn",
    "mix_sources",
    "mixed_vjp_fn",
    "param_gradient_fn",
    "stack_systems",
]
