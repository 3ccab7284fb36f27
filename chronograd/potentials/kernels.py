"""Pair kernels of particle systems: each a pure function ``f(r, **params)`` of the pair
distance and the pair's parameters, written once and used by pair terms (any neighbor list or
explicit pairs), bonded terms and users' own code.

Parameters are per pair, gathered from per-species matrices (``PAIR_KERNELS[name].params``
names them in order). Conventions follow JAX MD's ``energy`` module where it has the form, so
that the same numbers give the same energies:

- lennard_jones(sigma, epsilon): 4 eps ((sigma/r)^12 - (sigma/r)^6)
- wca(sigma, epsilon): LJ + eps for r < 2^(1/6) sigma, 0 beyond
- morse(sigma, epsilon, alpha): eps (exp(-2 a (r - sigma)) - 2 exp(-a (r - sigma)))
- soft_sphere(sigma, epsilon, alpha): eps / a (1 - r/sigma)^a for r < sigma, 0 beyond
- harmonic_morse(sigma, epsilon, alpha, k): k/2 (r - sigma)^2 - eps for r < sigma, morse beyond
- gaussian(sigma, epsilon): eps exp(-r^2 / (2 sigma^2))
- yukawa(epsilon, kappa): eps exp(-kappa r) / r

``harmonic_morse`` is the form of Zu & Goodrich (Commun. Mater. 2024) for athermal packings:
a harmonic repulsive core of stiffness k inside the contact distance sigma (the sum of radii)
and a Morse well of depth eps (the binding energy B_ab of the two species) outside; value and
slope are continuous at r = sigma. Every kernel is smooth wherever it is finite; the masks use
the double-``where`` form so gradients beyond a kernel's range are exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp

WCA_RANGE = 2.0 ** (1.0 / 6.0)


def lennard_jones(r, sigma, epsilon):
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def wca(r, sigma, epsilon):
    inside = r < WCA_RANGE * sigma
    rr = jnp.where(inside, r, WCA_RANGE * sigma)
    return jnp.where(inside, lennard_jones(rr, sigma, epsilon) + epsilon, 0.0)


def morse(r, sigma, epsilon, alpha):
    e = jnp.exp(-alpha * (r - sigma))
    return epsilon * (e * e - 2.0 * e)


def soft_sphere(r, sigma, epsilon, alpha=2.0):
    overlap = jnp.maximum(1.0 - r / sigma, 0.0)
    inside = overlap > 0.0
    return jnp.where(inside, epsilon / alpha * jnp.where(inside, overlap, 1.0) ** alpha, 0.0)


def harmonic_morse(r, sigma, epsilon, alpha, k):
    core = 0.5 * k * (r - sigma) ** 2 - epsilon
    return jnp.where(r < sigma, core, morse(jnp.maximum(r, sigma), sigma, epsilon, alpha))


def gaussian(r, sigma, epsilon):
    return epsilon * jnp.exp(-0.5 * (r / sigma) ** 2)


def yukawa(r, epsilon, kappa):
    return epsilon * jnp.exp(-kappa * r) / r


@dataclass(frozen=True)
class PairKernel:
    """A named kernel and the order of its parameters (each a per-species matrix)."""

    name: str
    fn: Callable
    params: tuple[str, ...]
    finite_at_zero: bool = False  # True when U(0) is finite (overlapping particles allowed)


def smoothed(kernel: PairKernel, r_onset: float, r_cutoff: float) -> PairKernel:
    """``kernel`` times the C1 switch S(r) of HOOMD-blue and JAX MD's
    ``multiplicative_isotropic_cutoff``: S = 1 below r_onset, 0 beyond r_cutoff, and
    S = (rc^2 - r^2)^2 (rc^2 + 2 r^2 - 3 ro^2) / (rc^2 - ro^2)^3 between — the same
    truncation as JAX MD's ``lennard_jones_pair`` (r_onset = 2 sigma, r_cutoff = 2.5 sigma),
    so the two give the same energies. Use it with a pair cutoff of ``r_cutoff``."""
    if not 0 < r_onset < r_cutoff:
        raise ValueError(f"need 0 < r_onset < r_cutoff, got {r_onset}, {r_cutoff}")
    rc2, ro2 = r_cutoff ** 2, r_onset ** 2

    def fn(r, **params):
        r2 = r * r
        inner = jnp.where(r < r_cutoff, (rc2 - r2) ** 2 * (rc2 + 2 * r2 - 3 * ro2)
                          / (rc2 - ro2) ** 3, 0.0)
        return jnp.where(r < r_onset, 1.0, inner) * kernel.fn(r, **params)

    return PairKernel(f"{kernel.name}_smoothed", fn, kernel.params, kernel.finite_at_zero)


PAIR_KERNELS = {k.name: k for k in (
    PairKernel("lennard_jones", lennard_jones, ("sigma", "epsilon")),
    PairKernel("wca", wca, ("sigma", "epsilon")),
    PairKernel("morse", morse, ("sigma", "epsilon", "alpha"), finite_at_zero=True),
    PairKernel("soft_sphere", soft_sphere, ("sigma", "epsilon", "alpha"), finite_at_zero=True),
    PairKernel("harmonic_morse", harmonic_morse, ("sigma", "epsilon", "alpha", "k"),
               finite_at_zero=True),
    PairKernel("gaussian", gaussian, ("sigma", "epsilon"), finite_at_zero=True),
    PairKernel("yukawa", yukawa, ("epsilon", "kappa")),
)}
