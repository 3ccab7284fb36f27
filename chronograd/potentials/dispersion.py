"""Long-range dispersion correction for a truncated (optionally switched) Lennard-Jones potential.

Reproduces OpenMM's NonbondedForce correction (NonbondedForceImpl::calcDispersionCorrection):
atoms are grouped into classes of equal (sigma, epsilon); the mean interaction over all
N (N + 1) / 2 class-weighted pairs beyond the cutoff (and the part removed by the switch) is
integrated analytically, giving E = C / V.

Classes are fixed when the term is built (they are the atom types). Inside the traced function
each class takes the mean sigma and epsilon of its members, which equals OpenMM's value and
gives exact first derivatives with respect to every atom's parameters whenever the members of
a class share their values, as they do when parameters come from a force field.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.potentials.pair import safe_sqrt, switching_function

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(48)


def lj_classes(sigma, epsilon) -> tuple[np.ndarray, np.ndarray]:
    """Class index of each atom ([N] int) and the class sizes ([K] int), on the host."""
    keys = np.stack([np.asarray(sigma, np.float64), np.asarray(epsilon, np.float64)], axis=1)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1).astype(np.int32), counts.astype(np.int64)


def _switch_integral(sigma, cutoff, switch_distance):
    """int_{r_s}^{r_c} r^2 (sigma^12/r^12 - sigma^6/r^6) (1 - S(r)) dr by Gauss-Legendre."""
    half = 0.5 * (cutoff - switch_distance)
    r = switch_distance + half * (1.0 + jnp.asarray(_GL_NODES))
    w = half * jnp.asarray(_GL_WEIGHTS)
    s6 = (sigma[..., None] / r) ** 6
    integrand = r * r * (s6 * s6 - s6) * (1.0 - switching_function(r, switch_distance, cutoff))
    return jnp.sum(w * integrand, axis=-1)


def dispersion_coefficient(sigma, epsilon, classes, class_counts, cutoff, switch_distance=None):
    """C such that the dispersion correction is C / V (kJ/mol nm^3).

    Args:
        sigma, epsilon: [N] per-atom LJ parameters (nm, kJ/mol).
        classes: [N] int class of each atom; class_counts: [K] members per class (0 for padding).
        cutoff: nm.  switch_distance: nm or None.
    """
    k = class_counts.shape[0]
    counts = jnp.asarray(class_counts, dtype=sigma.dtype)
    # classes with no members (padding in a batch) contribute nothing
    per_class = jnp.where(counts > 0, counts, 1.0)
    sig_c = jax.ops.segment_sum(sigma, classes, num_segments=k) / per_class
    eps_c = jax.ops.segment_sum(epsilon, classes, num_segments=k) / per_class
    sig_ij = 0.5 * (sig_c[:, None] + sig_c[None, :])
    eps_ij = safe_sqrt(eps_c[:, None] * eps_c[None, :])
    pair_count = counts[:, None] * counts[None, :]
    upper = np.triu(np.ones((k, k), dtype=bool), 1)
    weight = jnp.where(jnp.asarray(upper), pair_count, 0.0) + jnp.diag(counts * (counts + 1) / 2)
    s6 = sig_ij**6
    total = jnp.sum(weight * eps_ij * (s6 * s6 / (9 * cutoff**9) - s6 / (3 * cutoff**3)))
    if switch_distance is not None:
        total = total + jnp.sum(weight * eps_ij * _switch_integral(sig_ij, cutoff, switch_distance))
    n = jnp.sum(counts)
    return 8.0 * n * n * math.pi * total / (n * (n + 1) / 2)
