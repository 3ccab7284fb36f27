"""Force evaluation, the primitive every engine uses: dynamics, minimization, gradients.

One call places the virtual sites from their parents, updates the neighbor list (rebuilt when
an atom moved more than half the skin; an overflow is a flag in it) and evaluates U and
F = -dU/dx in one pass.
"""

from __future__ import annotations

import jax

from chronograd.system.virtual_sites import place_virtual_sites


def force_fn(system, neighbor_fns=None):
    """``compute(x, box, params, neighbors) -> (x with sites placed, neighbors, U, F)``.

    Virtual sites are placed from their parents, the neighbor list is updated (rebuilt when an
    atom moved more than half the skin; overflow is a flag in it), and U and F = -dU/dx are
    evaluated in one pass."""
    energy = jax.value_and_grad(system.energy_fn(neighbor_list=True))
    sites, source = system.virtual_sites, system.source

    def compute(x, box, params, neighbors):
        if sites:
            x = place_virtual_sites(x, sites, params if source is None else source(params))
        if neighbors is not None:
            neighbors = neighbor_fns.update(x, neighbors, box)
        u, g = energy(x, box, params, neighbors)
        return x, neighbors, u, -g

    return compute
