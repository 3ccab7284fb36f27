"""Observables: pure JAX functions of one frame, ``O(positions, box, params) -> array``.

Every observable here has that one signature so that any gradient estimator can take any of
them (and any function a user writes with the same signature). Factories bind what is fixed
(atom indices, masses, the system); the returned function is jit-able and differentiable in
positions, box and params. Units: nm, kJ/mol, g/mL, radians, nm^3.

    rg = radius_of_gyration(system.masses)
    d = distance(0, 5)
    U = potential_energy(system)
    g = rdf(oxygens, oxygens, r=jnp.linspace(0.2, 0.8, 61))    # smooth, differentiable g(r)

Ensemble-level transforms (an NOE distance is <r^-6>^(-1/6), not the average of a per-frame
value) are given as ``transform`` to the estimators; ``noe_transform`` is one.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.potentials.geometry import bond_lengths, dihedral_angles
from chronograd.space.periodic import minimum_image as _pbc_displacement
from chronograd.units import AVOGADRO


def potential_energy(system, term: str | None = None):
    """U (kJ/mol), or one named term of it (``system.term_names()``). Depends on params."""
    if term is None:
        energy = system.energy_fn()
        return lambda positions, box, params: energy(positions, box, params)
    names = system.term_names()
    if term not in names:
        raise InputError(f"unknown energy term {term!r}; this system has {', '.join(names)}")
    terms = system.energy_terms_fn()
    return lambda positions, box, params: terms(positions, box, params)[term]


def volume(positions, box, params=None):
    """Box volume (nm^3)."""
    if box is None:
        raise InputError("volume needs a periodic box; this frame has none")
    return jnp.abs(jnp.linalg.det(box))


def density(masses):
    """Mass density (g/mL) of a periodic frame with particle ``masses`` (amu)."""
    total = float(np.sum(np.asarray(masses, np.float64)))

    def rho(positions, box, params=None):
        return total / AVOGADRO / (volume(positions, box) * 1e-21)

    return rho


def radius_of_gyration(masses=None, atoms=None):
    """Mass-weighted radius of gyration (nm) of ``atoms`` (default all massive particles).
    Positions are taken as given: pass whole molecules, not wrapped ones."""
    sel = None if atoms is None else np.asarray(atoms, np.int32)

    def rg(positions, box, params=None):
        x = positions if sel is None else positions[sel]
        if masses is None:
            w = jnp.ones(x.shape[0], x.dtype)
        else:
            m = np.asarray(masses, np.float64)
            w = jnp.asarray(m if sel is None else m[sel], x.dtype)
        com = jnp.sum(w[:, None] * x, axis=0) / jnp.sum(w)
        return jnp.sqrt(jnp.sum(w * jnp.sum((x - com) ** 2, axis=-1)) / jnp.sum(w))

    return rg


def distance(i: int, j: int):
    """|x_j - x_i| (nm), minimum image when there is a box."""
    atoms = np.array([[i, j]], np.int32)

    def d(positions, box, params=None):
        return bond_lengths(positions, box, atoms)[0]

    return d


def end_to_end(first: int, last: int):
    """End-to-end distance (nm) of a chain from atom ``first`` to atom ``last``."""
    return distance(first, last)


def distances(pairs):
    """Distances (nm) for ``pairs`` [P, 2], minimum image: a vector observable."""
    p = np.asarray(pairs, np.int32).reshape(-1, 2)

    def d(positions, box, params=None):
        return bond_lengths(positions, box, p)

    return d


def noe_intensity(pairs):
    """Per-frame r^-6 (nm^-6) for ``pairs``; average it, then apply ``noe_transform``
    to get the NOE distance <r^-6>^(-1/6)."""
    d = distances(pairs)
    return lambda positions, box, params=None: d(positions, box) ** -6


def noe_transform(mean_r_minus_6):
    """<r^-6>^(-1/6) (nm): the ensemble transform for ``noe_intensity``."""
    return mean_r_minus_6 ** (-1.0 / 6.0)


def dihedral(i: int, j: int, k: int, l: int):  # noqa: E741
    """Dihedral angle i-j-k-l (radians, in (-pi, pi]), IUPAC sign convention (as mdtraj and
    OpenMM)."""
    atoms = np.array([[i, j, k, l]], np.int32)

    def phi(positions, box, params=None):
        return dihedral_angles(positions, box, atoms)[0]

    return phi


def rdf(group_a, group_b, r, *, width: float | None = None):
    """A smooth radial distribution function g(r) between two atom groups of a periodic frame.

    Each pair distance contributes a Gaussian of standard deviation ``width`` (default: the
    bin spacing of ``r``) instead of a histogram count, so g(r) is differentiable in positions.
    Groups are atom-index arrays. Pairs within the same molecule are kept; identical atoms
    are skipped.
    Normalized like mdtraj.compute_rdf: g = n(r) / (4 pi r^2 dr rho_b N_a).
    """
    a, b = _group(group_a), _group(group_b)
    r = jnp.asarray(r)
    sigma = float(width) if width is not None else float(r[1] - r[0])
    ii, jj = np.meshgrid(a, b, indexing="ij")
    keep = ii != jj
    pi, pj = ii[keep], jj[keep]

    def g(positions, box, params=None):
        if box is None:
            raise InputError("rdf needs a periodic box; this frame has none")
        v = _pbc_displacement(positions[pj] - positions[pi], box)
        d = jnp.linalg.norm(v, axis=-1)
        kern = jnp.exp(-0.5 * ((r[:, None] - d[None, :]) / sigma) ** 2)
        counts = jnp.sum(kern, axis=1) / (sigma * jnp.sqrt(2 * jnp.pi))  # per unit length
        vol = volume(positions, box)
        rho_b = len(b) / vol
        return counts / (4 * jnp.pi * r ** 2 * rho_b * len(a))

    return g


def _group(group):
    idx = np.asarray(group, np.int32).ravel()
    if idx.size == 0:
        raise InputError("an rdf atom group is empty")
    return idx


def check_finite(values, name: str = "observable"):
    """Raise a clear error if ``values`` (host arrays) hold NaN or inf."""
    v = np.asarray(values)
    bad = ~np.isfinite(v)
    if bad.any():
        where = np.argwhere(bad)[0]
        raise InputError(
            f"{name} returned a non-finite value ({v[tuple(where)]}) at index {tuple(where)}:"
            " check that the frames are whole (not wrapped) and that the observable is defined"
            " there (e.g. no zero distances, a box for volume/density/rdf)")
    return v


__all__ = ["AVOGADRO", "check_finite", "density", "dihedral", "distance", "distances",
           "end_to_end", "noe_intensity", "noe_transform", "potential_energy",
           "radius_of_gyration", "rdf", "volume"]
