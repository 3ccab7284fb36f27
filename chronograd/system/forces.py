"""Force evaluation, the primitive every engine uses: dynamics, minimization, gradients.

One call places the virtual sites from their parents, updates the neighbor list (rebuilt when
an atom moved more than half the skin; an overflow is a flag in it) and evaluates U and
F = -dU/dx in one pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from chronograd.errors import InputError
from chronograd.system.virtual_sites import place_virtual_sites

PRECISIONS = ("double", "mixed")


def to_float32(tree):
    """Every floating array of ``tree`` as float32 (None and integer arrays unchanged)."""

    def one(a):
        a = jnp.asarray(a)
        return a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a

    return jax.tree_util.tree_map(one, tree)


def force_fn(system, neighbor_fns=None, *, precision: str = "double"):
    """``compute(x, box, params, neighbors) -> (x with sites placed, neighbors, U, F)``.

    Virtual sites are placed from their parents, the neighbor list is updated (rebuilt when an
    atom moved more than half the skin; overflow is a flag in it), and U and F = -dU/dx are
    evaluated in one pass. ``precision="mixed"``: U and F are evaluated in float32 (positions,
    box and parameters rounded once per evaluation) and returned in the caller's dtype, so an
    integrator keeps float64 positions and velocities; site placement and the neighbor list
    stay in the caller's precision."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    energy = jax.value_and_grad(system.energy_fn(neighbor_list=True))
    sites, source = system.virtual_sites, system.source

    def compute(x, box, params, neighbors):
        if sites:
            x = place_virtual_sites(x, sites, params if source is None else source(params))
        if neighbors is not None:
            neighbors = neighbor_fns.update(x, neighbors, box)
        if precision == "mixed":
            u, g = energy(x.astype(jnp.float32), None if box is None else to_float32(box),
                          to_float32(params), neighbors)
            return x, neighbors, u.astype(x.dtype), -g.astype(x.dtype)
        u, g = energy(x, box, params, neighbors)
        return x, neighbors, u, -g

    return compute
