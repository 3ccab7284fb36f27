"""Internal coordinates with safe gradients: the one place distances, angles and dihedrals are
computed (bonded potentials, observables and fit targets all use it).

Every function takes positions [N, 3] nm, a box [3, 3] nm or None (minimum image when given)
and atom-index rows [M, k]. Rows may be padding: an index equal to N (one past the last atom,
the same convention as neighbor-list rows) marks a row that is not there. ``gather`` replaces
the coordinates of such rows by a fixed, non-degenerate geometry, so every derived quantity is
finite with a finite gradient, and callers zero their contribution with ``where(valid, ..)``:
padded rows then contribute exactly 0 to values and to gradients (the double-``where`` trick).
Singular real geometries (coincident atoms, linear angles, collinear torsion atoms) give finite
values and zero, not NaN, gradients at the singular point.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from chronograd.space.periodic import minimum_image, safe_norm

# Stand-in coordinates (nm) of padded rows: distinct, non-collinear, not coplanar.
_PADDING_GEOMETRY = 0.1 * np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0],
                                    [1.0, 1.0, 1.0]])


def safe_atan2(y, x):
    """atan2 with a zero (not NaN) gradient at the origin."""
    degenerate = (x == 0) & (y == 0)
    return jnp.where(degenerate, 0.0, jnp.arctan2(jnp.where(degenerate, 0.0, y),
                                                  jnp.where(degenerate, 1.0, x)))


def gather(positions, atoms):
    """(coordinates [M, k, 3], valid [M] bool) of the atoms of each row.

    Rows containing an index >= N are padding: ``valid`` is False and their coordinates are a
    fixed non-degenerate stand-in, independent of ``positions``.
    """
    atoms = jnp.asarray(atoms)
    n = positions.shape[0]
    valid = jnp.all(atoms < n, axis=-1)
    x = positions[jnp.minimum(atoms, n - 1)]
    stand_in = jnp.asarray(_PADDING_GEOMETRY[: atoms.shape[-1], : positions.shape[-1]],
                           positions.dtype)  # 2D systems: the xy plane of the stand-in
    return jnp.where(valid[..., None, None], x, stand_in), valid


def _vector(x, a, b, box):
    """x[:, a] - x[:, b] (minimum image when ``box`` is given)."""
    return minimum_image(x[..., a, :] - x[..., b, :], box)


def distances_of(x, box):
    """[M] |x1 - x0| for gathered pairs [M, 2, 3]."""
    return safe_norm(_vector(x, 0, 1, box))


def angles_of(x, box):
    """[M] angles x0-x1-x2 (x1 the vertex), rad in [0, pi], for gathered triples."""
    u = _vector(x, 0, 1, box)
    v = _vector(x, 2, 1, box)
    return safe_atan2(safe_norm(jnp.cross(u, v)), jnp.sum(u * v, axis=-1))


def dihedrals_of(x, box):
    """[M] IUPAC dihedral angles x0-x1-x2-x3, rad in (-pi, pi] (trans = pi; the sign
    convention of OpenMM and mdtraj), for gathered quadruples."""
    b1 = _vector(x, 1, 0, box)
    b2 = _vector(x, 2, 1, box)
    b3 = _vector(x, 3, 2, box)
    n1 = jnp.cross(b1, b2)
    n2 = jnp.cross(b2, b3)
    y = safe_norm(b2) * jnp.sum(b1 * n2, axis=-1)
    return safe_atan2(y, jnp.sum(n1 * n2, axis=-1))


def bond_lengths(positions, box, atoms):
    """[B] distances r(atoms[:, 0], atoms[:, 1]), nm (padded rows: the stand-in's)."""
    return distances_of(gather(positions, atoms)[0], box)


def bond_angles(positions, box, atoms):
    """[A] angles i-j-k (j the vertex), rad, in [0, pi]."""
    return angles_of(gather(positions, atoms)[0], box)


def dihedral_angles(positions, box, atoms):
    """[T] IUPAC dihedral angles i-j-k-l, rad, in (-pi, pi] (trans = pi)."""
    return dihedrals_of(gather(positions, atoms)[0], box)
