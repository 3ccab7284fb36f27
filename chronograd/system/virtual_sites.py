"""Virtual sites: massless particles whose positions are functions of their parent atoms.

Positions of virtual sites are recomputed from their parents inside the traced energy function,
so forces on them flow to the parents by autodiff (as OpenMM distributes them). The kinds and
formulas are OpenMM's:

* ``two_average``:    x = w0 p0 + w1 p1
* ``three_average``:  x = w0 p0 + w1 p1 + w2 p2
* ``out_of_plane``:   x = p0 + w12 (p1 - p0) + w13 (p2 - p0) + wc (p1 - p0) x (p2 - p0)
* ``local_coordinates``: origin o = sum wo_k p_k, x-direction sum wx_k p_k, y-direction
  sum wy_k p_k; z = normalize(xdir x ydir), x = normalize(xdir), y = z x x;
  position = o + l_x x + l_y y + l_z z. When x and y are parallel (a SMIRNOFF BondCharge site,
  whose local y and z coordinates are zero) the y and z axes are taken as zero.

A group with a ``name`` may take its local coordinates from the system's slots
(``slots[name]["local_position"]``, [S, 3] nm), so they can depend on force-field parameters
(SMIRNOFF distances and angles); its ``weights`` then hold the values at the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("two_average", "three_average", "out_of_plane", "local_coordinates")


@dataclass(frozen=True, eq=False)
class VirtualSites:
    """One kind of virtual site for ``sites`` [S] with ``parents`` [S, k] and ``weights``
    [S, m] (local_coordinates: 3k weights for origin, x and y, then the 3 local coordinates,
    nm). ``name``: the slot group its local coordinates come from, if any."""

    kind: str
    sites: np.ndarray
    parents: np.ndarray
    weights: np.ndarray
    name: str = ""

    def positions(self, x, local=None):
        """Site positions [S, 3]; ``local`` [S, 3] overrides the local coordinates."""
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
        ez = _normalize_or_zero(zdir)
        ey = jnp.cross(ez, ex)
        local = w[:, 3 * k:] if local is None else local
        return origin + local[:, 0:1] * ex + local[:, 1:2] * ey + local[:, 2:3] * ez


jax.tree_util.register_dataclass(VirtualSites, data_fields=["sites", "parents", "weights"],
                                 meta_fields=["kind", "name"])


def resolved_weights(vs: VirtualSites, slots) -> np.ndarray:
    """``vs.weights`` with the local coordinates taken from ``slots`` where they are parameters
    (host values, for export)."""
    weights = np.asarray(vs.weights, np.float64).copy()
    if vs.name and slots is not None and vs.name in slots:
        weights[:, -3:] = np.asarray(slots[vs.name]["local_position"], np.float64)
    return weights


def _normalize_or_zero(v):
    """v / |v|, and 0 (with zero gradient) where |v| vanishes."""
    n2 = jnp.sum(v * v, axis=-1, keepdims=True)
    ok = n2 > 1e-24
    return jnp.where(ok, v / jnp.sqrt(jnp.where(ok, n2, 1.0)), 0.0)


def place_virtual_sites(x, virtual_sites, slots=None):
    """Positions with every virtual site recomputed from its parents (``slots``: the system's
    slots, for groups whose local coordinates are parameters)."""
    for vs in virtual_sites:
        local = None
        if vs.name and slots is not None and vs.name in slots:
            local = slots[vs.name]["local_position"]
        x = x.at[jnp.asarray(vs.sites)].set(vs.positions(x, local))
    return x
