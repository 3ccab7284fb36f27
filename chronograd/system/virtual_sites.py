"""Virtual sites: massless particles whose positions are functions of their parent atoms.

Positions of virtual sites are recomputed from their parents inside the traced energy function,
so forces on them flow to the parents by autodiff (as OpenMM distributes them). The kinds and
formulas are OpenMM's:

* ``two_average``:    x = w0 p0 + w1 p1
* ``three_average``:  x = w0 p0 + w1 p1 + w2 p2
* ``out_of_plane``:   x = p0 + w12 (p1 - p0) + w13 (p2 - p0) + wc (p1 - p0) x (p2 - p0)
* ``local_coordinates``: origin o = sum wo_k p_k, x-direction sum wx_k p_k, y-direction
  sum wy_k p_k; z = normalize(xdir x ydir), x = normalize(xdir), y = z x x;
  position = o + l_x x + l_y y + l_z z.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

KINDS = ("two_average", "three_average", "out_of_plane", "local_coordinates")


@dataclass(frozen=True, eq=False)
class VirtualSites:
    """One kind of virtual site for ``sites`` [S] with ``parents`` [S, k] and ``weights``
    [S, m] (local_coordinates: 3k weights for origin, x and y, then the 3 local coordinates,
    nm)."""

    kind: str
    sites: np.ndarray
    parents: np.ndarray
    weights: np.ndarray

    def positions(self, x):
        p = x[jnp.asarray(self.parents)]  # [S, k, 3]
        w = jnp.asarray(self.weights, x.dtype)
        if self.kind in ("two_average", "three_average"):
            return jnp.einsum("sk,skd->sd", w, p)
        if self.kind == "out_of_plane":
            r12, r13 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
            return (p[:, 0] + w[:, 0:1] * r12 + w[:, 1:2] * r13
                    + w[:, 2:3] * jnp.cross(r12, r13))
        k = p.shape[1]
        origin = jnp.einsum("sk,skd->sd", w[:, :k], p)
        xdir = jnp.einsum("sk,skd->sd", w[:, k:2 * k], p)
        ydir = jnp.einsum("sk,skd->sd", w[:, 2 * k:3 * k], p)
        zdir = jnp.cross(xdir, ydir)
        ex = xdir / jnp.linalg.norm(xdir, axis=-1, keepdims=True)
        ez = zdir / jnp.linalg.norm(zdir, axis=-1, keepdims=True)
        ey = jnp.cross(ez, ex)
        local = w[:, 3 * k:]
        return origin + local[:, 0:1] * ex + local[:, 1:2] * ey + local[:, 2:3] * ez


def place_virtual_sites(x, virtual_sites):
    """Positions with every virtual site recomputed from its parents."""
    for vs in virtual_sites:
        x = x.at[jnp.asarray(vs.sites)].set(vs.positions(x))
    return x
