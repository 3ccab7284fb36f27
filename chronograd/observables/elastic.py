"""Elastic constants at an energy minimum, by linear response (athermal, T = 0).

For a periodic system at a minimum x* of U, a homogeneous strain F = I + e deforms positions and
box affinely, x -> x F^T, box -> box F^T; the particles then relax non-affinely. Expanding to
second order in the Voigt strain vector s (2D: e_xx, e_yy, g_xy with e_xy = g_xy / 2; 3D: six),

    C = (1 / V) (A - X^T H^+ X),  A = d2U/ds2 (affine),  X = d2U/dx ds,  H = d2U/dx2,

where H^+ is the pseudo-inverse (the zero modes, rigid translations, do not respond). Everything
is a pure JAX function of (positions, box, params), so ``jax.grad`` of any property built on C
(a Poisson ratio, a bulk modulus) reaches the parameters; at the minimum, the implicit
dependence of x* on the parameters enters through ``gradients.implicit``.

Poisson ratio ``nu = -S_12 / S_11`` with S = C^-1 (strain along y under stress along x); for an
isotropic 2D solid it equals C_12 / C_11 (= 1/3 for a triangular spring lattice).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_VOIGT = {2: ((0, 0), (1, 1), (0, 1)),
          3: ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))}


def _strain(s, dim):
    e = jnp.zeros((dim, dim), s.dtype)
    for k, (a, b) in enumerate(_VOIGT[dim]):
        if a == b:
            e = e.at[a, a].set(s[k])
        else:  # engineering shear: e_ab = e_ba = g / 2
            e = e.at[a, b].set(0.5 * s[k]).at[b, a].set(0.5 * s[k])
    return jnp.eye(dim, dtype=s.dtype) + e


def elastic_constants(energy_fn, positions, box, params):
    """C [3, 3] (2D) or [6, 6] (3D), Voigt notation, energy per volume (area in 2D)."""
    n, dim = positions.shape
    s0 = jnp.zeros(len(_VOIGT[dim]), positions.dtype)

    def strained(x, s):
        f = _strain(s, dim)
        return energy_fn(x @ f.T, box @ f.T, params)

    affine = jax.hessian(strained, argnums=1)(positions, s0)
    mixed = jax.jacfwd(jax.grad(strained, argnums=0), argnums=1)(positions, s0)
    mixed = mixed.reshape(n * dim, -1)
    h = jax.hessian(strained, argnums=0)(positions, s0).reshape(n * dim, n * dim)
    relax = mixed.T @ jnp.linalg.pinv(h, rtol=1e-10, hermitian=True) @ mixed
    return (affine - relax) / jnp.abs(jnp.linalg.det(box))


def poisson_ratio(energy_fn, positions, box, params):
    """nu = -S_12 / S_11, S = C^-1: the lateral contraction under uniaxial stress along x."""
    c = elastic_constants(energy_fn, positions, box, params)
    s = jnp.linalg.inv(c)
    return -s[0, 1] / s[0, 0]
