"""Periodic boxes: minimum-image displacement and wrapping.

Box vectors are the rows of a [3, 3] array in nm, in OpenMM's reduced form::

    a = (ax, 0, 0),  b = (bx, by, 0),  c = (cx, cy, cz)
    ax > 0, by > 0, cz > 0,  ax >= 2|bx|,  ax >= 2|cx|,  by >= 2|cy|

which every OpenMM System uses. In this form the minimum image of a displacement is found by
removing whole c, then b, then a vectors (the same order as OpenMM), exact whenever the cutoff
is at most half the smallest perpendicular box width. ``box=None`` means no periodicity.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError


def check_reduced_box(box, *, where: str = "box", dim: int = 3) -> np.ndarray:
    """Validate box vectors on the host; return them as a float64 [dim, dim] array
    (``dim`` 2 for two-dimensional particle systems: a along x, b in the plane).

    Raises:
        InputError: naming what is wrong when the shape, finiteness or reduced form fails.
    """
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (dim, dim):
        raise InputError(f"{where}: expected box vectors of shape ({dim}, {dim}) in nm, got"
                         f" {b.shape}")
    if not np.all(np.isfinite(b)):
        raise InputError(f"{where}: box vectors contain NaN or infinity: {b.tolist()}")
    if dim == 2:
        if b[0, 1] != 0 or min(b[0, 0], b[1, 1]) <= 0 or b[0, 0] * (1 + 1e-6) < 2 * abs(b[1, 0]):
            raise InputError(f"{where}: 2D box vectors must be reduced: a = (ax, 0), b = (bx, by)"
                             f" with ax, by > 0 and ax >= 2|bx|; got {b.tolist()}")
        return b
    if b[0, 1] != 0 or b[0, 2] != 0 or b[1, 2] != 0:
        raise InputError(
            f"{where}: box vectors must be in OpenMM's reduced form (a along x, b in the xy "
            f"plane); got a={b[0].tolist()}, b={b[1].tolist()}"
        )
    if min(b[0, 0], b[1, 1], b[2, 2]) <= 0:
        raise InputError(f"{where}: box diagonal must be positive, got {np.diag(b).tolist()}")
    tol = 1e-6 * b[0, 0]
    if (
        b[0, 0] + tol < 2 * abs(b[1, 0])
        or b[0, 0] + tol < 2 * abs(b[2, 0])
        or b[1, 1] + tol < 2 * abs(b[2, 1])
    ):
        raise InputError(
            f"{where}: box vectors are not reduced (need ax >= 2|bx|, ax >= 2|cx|, by >= 2|cy|);"
            " reduce them as OpenMM's System.setDefaultPeriodicBoxVectors requires"
        )
    return b


def check_cutoff_fits(box, cutoff: float, name: str, where: str = "") -> None:
    """InputError unless every perpendicular width of ``box`` is at least twice ``cutoff``
    (the minimum image needs it); names the term ``name``."""
    width = float(np.min(np.asarray(perpendicular_widths(np.asarray(box, np.float64)))))
    if width < 2.0 * cutoff:
        at = f"{where}: " if where else ""
        raise InputError(f"{at}term {name!r}: the box is {width:.4g} wide but the cutoff is"
                         f" {cutoff}; a periodic box must be at least twice the cutoff wide")


def box_volume(box):
    """Volume of a reduced box, nm^3."""
    return box[0, 0] * box[1, 1] * box[2, 2]


def perpendicular_widths(box):
    """Distances between opposite faces of the cell, nm: 1 / |reciprocal vector| per axis."""
    return 1.0 / jnp.linalg.norm(jnp.linalg.inv(box), axis=0)


def minimum_image(dr, box):
    """Minimum-image displacement vectors.

    Args:
        dr: [..., 3] displacements r_i - r_j, nm ([..., 2] in 2D).
        box: [3, 3] reduced box vectors (rows), nm ([2, 2] in 2D), or None.

    Returns:
        [..., 3] displacements with whole box vectors removed.
    """
    if box is None:
        return dr
    for k in reversed(range(box.shape[0])):  # c, then b, then a (2D boxes: b, then a)
        dr = dr - jnp.round(dr[..., k:k + 1] / box[k, k]) * box[k]
    return dr


def squared_distances(positions, i, j, box):
    """|minimum image of x_i - x_j|^2 for index arrays i, j of broadcastable shapes.

    Computed one coordinate at a time (1-D gathers, no [..., 3] intermediates): XLA:CPU
    gathers and vectorizes arrays with a minor axis of 3 poorly, and a neighbor-list search
    over all candidates runs about 2x faster this way. The same operations as
    ``minimum_image``, in the same order.
    """
    dim = positions.shape[-1]
    d = [positions[:, k][i] - positions[:, k][j] for k in range(dim)]
    if box is not None:
        for k in reversed(range(dim)):  # c, then b, then a
            shift = jnp.round(d[k] / box[k, k])
            d = [d[m] - shift * box[k, m] for m in range(dim)]
    return sum(c * c for c in d)


def displacement(positions, i, j, box):
    """r_i - r_j for index arrays i, j (minimum image when ``box`` is given)."""
    return minimum_image(positions[i] - positions[j], box)


def fractional_coordinates(positions, box):
    """Fractional coordinates s with positions = s @ box, [N, 3] (not wrapped)."""
    return positions @ jnp.linalg.inv(box)


def wrap_positions(positions, box):
    """Wrap positions into the primary cell [0, 1)^3 in fractional coordinates."""
    s = fractional_coordinates(positions, box)
    return (s - jnp.floor(s)) @ box


def safe_norm(v, axis=-1):
    """Euclidean norm whose gradient is zero (not NaN) at v = 0 (the double-``where`` trick)."""
    sq = jnp.sum(v * v, axis=axis)
    nonzero = sq > 0
    return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)
