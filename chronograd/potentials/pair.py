"""Nonbonded pair kernels, each a function of the pair distance r (nm) and per-pair parameters.

These are shared by all-pairs, neighbor-list and exception evaluation, which differ only in
the pair indices they pass in (see ``nonbonded_pair_energy``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import erf, erfc

from chronograd.space.periodic import minimum_image
from chronograd.units import ONE_4PI_EPS0


def safe_sqrt(x):
    """sqrt with a zero (not infinite or NaN) derivative at 0.

    Used for the Lorentz-Berthelot epsilon sqrt(e_i e_j): at e_i = 0 the true derivative with
    respect to e_i does not exist (it is infinite); chronograd reports 0 there.
    """
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def lennard_jones(r, sigma, epsilon):
    """4 eps ((sigma/r)^12 - (sigma/r)^6), kJ/mol."""
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def switching_function(r, switch_distance, cutoff):
    """OpenMM's switch S(x) = 1 - 6x^5 + 15x^4 - 10x^3, x = (r - r_s)/(r_c - r_s); 1 below r_s."""
    x = jnp.clip((r - switch_distance) / (cutoff - switch_distance), 0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x * x)


def coulomb(r, charge_prod):
    """Plain Coulomb K qq / r, kJ/mol."""
    return ONE_4PI_EPS0 * charge_prod / r


def reaction_field_constants(cutoff, dielectric):
    """(k_rf, c_rf) of OpenMM's reaction-field cutoff (CutoffNonPeriodic / CutoffPeriodic)."""
    k_rf = (dielectric - 1.0) / ((2.0 * dielectric + 1.0) * cutoff**3)
    c_rf = 3.0 * dielectric / ((2.0 * dielectric + 1.0) * cutoff)
    return k_rf, c_rf


def coulomb_reaction_field(r, charge_prod, k_rf, c_rf):
    """K qq (1/r + k_rf r^2 - c_rf), kJ/mol."""
    return ONE_4PI_EPS0 * charge_prod * (1.0 / r + k_rf * r * r - c_rf)


def coulomb_ewald_direct(r, charge_prod, alpha):
    """Real-space Ewald term K qq erfc(alpha r) / r, kJ/mol."""
    return ONE_4PI_EPS0 * charge_prod * erfc(alpha * r) / r


def coulomb_ewald_exclusion(r, charge_prod, alpha):
    """Removes the reciprocal-space interaction of an excluded pair: -K qq erf(alpha r) / r."""
    return -ONE_4PI_EPS0 * charge_prod * erf(alpha * r) / r


def dispersion_long_range(r, alpha):
    """g(r) = 1 - exp(-a^2 r^2) (1 + a^2 r^2 + a^4 r^4 / 2): the part of C6/r^6 that LJPME puts
    in reciprocal space (g(r)/r^6 -> a^6/6 as r -> 0)."""
    x2 = (alpha * r) ** 2
    return 1.0 - jnp.exp(-x2) * (1.0 + x2 + 0.5 * x2 * x2)


def pair_distances(positions, box, pairs):
    """Distances of pairs ``(i, j)``: index arrays of broadcastable shapes, e.g. ([P], [P])
    for an explicit list or ([N, 1], [N, M]) for neighbor-list rows. Padded entries have
    j == N. Returns arrays of the broadcast shape.

    Returns (r [P], mask [P]); padded entries get r = 1 so kernels stay finite, and the
    double-``where`` keeps their gradients exactly zero. A real pair at r = 0 is a genuine
    singularity and gives an infinite energy, which the caller reports.
    """
    n = positions.shape[0]
    i, j = pairs
    mask = (j < n) & (i < n)
    dr = minimum_image(positions[jnp.minimum(i, n - 1)] - positions[jnp.minimum(j, n - 1)], box)
    r2 = jnp.sum(dr * dr, axis=-1)
    r = jnp.sqrt(jnp.where(mask, r2, 1.0))
    return r, mask


ROW_BLOCK = 256  # neighbor-list rows per block in ``sum_over_rows``


def sum_over_rows(pair_sums, pairs, n_atoms: int, *, block: int = ROW_BLOCK):
    """``pair_sums(i, j) -> tuple of scalars`` (sums over the pairs it is given) summed over a
    neighbor list's rows ``(i [N, 1], j [N, M])``, ``block`` rows at a time.

    Each block is ``jax.checkpoint``-ed inside a ``lax.scan``: the backward pass recomputes a
    block's pair quantities instead of storing [N, M] intermediates for every row, so forces
    stream through cache-sized blocks (about 2x faster on CPU for a water box than one [N, M]
    program; the same values and derivatives of every order). Explicit pair lists ([P], [P])
    and lists of at most ``block`` rows are summed in one call. Padded rows hold the index N.
    """
    i, j = pairs
    n_rows = j.shape[0]
    if j.ndim != 2 or i.ndim != 2 or n_rows <= block:
        return pair_sums(i, j)
    n_blocks = -(-n_rows // block)
    pad = n_blocks * block - n_rows
    fill = n_atoms  # the padding index N: rows of nothing
    j_b = jnp.concatenate([j, jnp.full((pad, j.shape[1]), fill, j.dtype)]).reshape(
        n_blocks, block, j.shape[1])
    i_b = jnp.concatenate([jnp.broadcast_to(i, (n_rows, 1)),
                           jnp.full((pad, 1), fill, i.dtype)]).reshape(n_blocks, block, 1)
    one = jax.checkpoint(lambda ij: pair_sums(*ij))
    first = jax.eval_shape(one, (i_b[0], j_b[0]))
    zero = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)

    def body(total, ij):
        return jax.tree_util.tree_map(jnp.add, total, one(ij)), None

    return jax.lax.scan(body, zero, (i_b, j_b))[0]
