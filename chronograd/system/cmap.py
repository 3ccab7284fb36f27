"""CMAP torsion-torsion correction maps (OpenMM's CMAPTorsionForce; CHARMM, amber ff19SB).

Each map is an energy grid G[i, j] at torsion angles (i 2pi/n, j 2pi/n). As in OpenMM, the
energy between grid points is the bicubic Hermite patch whose corner slopes dE/dphi, dE/dpsi
and d2E/dphi dpsi come from periodic cubic splines through the grid (rows, columns, then the
columns of dE/dpsi). The slopes are a fixed linear map of the grid (``spline_slope_matrix``),
so the grid energies are ordinary differentiable parameters: ``params[name]["map_k"]`` [n, n].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.potentials.geometry import dihedrals_of, gather


@lru_cache(maxsize=32)
def spline_slope_matrix(n: int) -> np.ndarray:
    """[n, n] D with D @ y = slopes at the knots of the periodic cubic spline through y
    sampled at spacing 2 pi / n (the second derivatives M solve the cyclic system
    M_{i-1} + 4 M_i + M_{i+1} = 6 (y_{i+1} - 2 y_i + y_{i-1}) / h^2)."""
    h = 2.0 * np.pi / n
    eye = np.eye(n)
    up = np.roll(eye, 1, axis=1)  # (up @ y)_i = y_{i+1}
    down = up.T
    a = 4.0 * eye + up + down
    b = 6.0 / h ** 2 * (up - 2.0 * eye + down)
    m = np.linalg.solve(a, b)
    return (up - eye) / h - h / 6.0 * (2.0 * eye + up) @ m


def _hermite(t):
    t2, t3 = t * t, t * t * t
    return (2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2)


def cmap_energy(grid, phi, psi):
    """Energies [T] of grid [n, n] at torsion angles phi, psi [T] (rad, any range)."""
    n = grid.shape[0]
    d = jnp.asarray(spline_slope_matrix(n))
    delta = 2.0 * np.pi / n
    d1 = d @ grid * delta
    d2 = grid @ d.T * delta
    d12 = d @ d2 * delta
    a = jnp.mod(phi, 2.0 * np.pi) / delta
    b = jnp.mod(psi, 2.0 * np.pi) / delta
    s = jnp.clip(jnp.floor(a).astype(jnp.int32), 0, n - 1)
    t = jnp.clip(jnp.floor(b).astype(jnp.int32), 0, n - 1)
    u, v = a - s, b - t
    hu0, hu1, hu2, hu3 = _hermite(u)
    hv0, hv1, hv2, hv3 = _hermite(v)
    s1, t1 = (s + 1) % n, (t + 1) % n
    out = 0.0
    for si, hv_u, hd_u in ((s, hu0, hu1), (s1, hu2, hu3)):
        for ti, hv_v, hd_v in ((t, hv0, hv1), (t1, hv2, hv3)):
            out = out + (grid[si, ti] * hv_u * hv_v + d1[si, ti] * hd_u * hv_v
                         + d2[si, ti] * hv_u * hd_v + d12[si, ti] * hd_u * hd_v)
    return out


@dataclass(frozen=True, eq=False)
class CMAPTorsionTerm:
    """Torsion pairs ``atoms`` [T, 8] (phi atoms, then psi atoms) on maps ``map_index`` [T];
    static: name, sizes (grid size of each map), periodic; params {"map_k": [n_k, n_k] kJ/mol}."""

    name: str
    atoms: np.ndarray
    map_index: np.ndarray
    sizes: tuple
    periodic: bool = False
    kind: ClassVar[str] = "cmap_torsion"
    report: ClassVar[str] = "cmap_torsion"
    allows_overlap: ClassVar[bool] = True

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(f"map_{k}" for k in range(len(self.sizes)))

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def validate(self, where: str, slots: dict, n: int) -> None:
        from chronograd.system.validate import _indices

        atoms = np.asarray(self.atoms)
        _indices(where, "phi atoms", atoms[:, :4], 4, n)
        _indices(where, "psi atoms", atoms[:, 4:], 4, n)
        idx = np.asarray(self.map_index)
        bad = np.flatnonzero((idx < 0) | (idx >= len(self.sizes)))
        if idx.shape != (atoms.shape[0],) or bad.size:
            at = int(bad[0]) if bad.size else 0
            raise InputError(f"{where}: torsion pair {at} uses map {idx[at] if idx.size else '?'},"
                             f" but there are {len(self.sizes)} maps")
        for k, size in enumerate(self.sizes):
            g = np.asarray(slots[f"map_{k}"])
            if g.shape != (size, size) or not np.all(np.isfinite(g)):
                raise InputError(f"{where}: map_{k} must be a finite [{size}, {size}] grid")

    def energy_terms(self, positions, box, params, pairs=None):
        box = box if self.periodic else None
        atoms = jnp.asarray(self.atoms)
        xa, va = gather(positions, atoms[:, :4])
        xb, vb = gather(positions, atoms[:, 4:])
        phi, psi = dihedrals_of(xa, box), dihedrals_of(xb, box)
        idx = jnp.asarray(self.map_index)
        e = 0.0
        for k in range(len(self.sizes)):
            e = e + jnp.where(idx == k, cmap_energy(jnp.asarray(params[f"map_{k}"]), phi, psi),
                              0.0)
        return {self.report: jnp.sum(jnp.where(va & vb, e, 0.0))}

    def to_openmm(self, p):
        import openmm

        f = openmm.CMAPTorsionForce()
        for k, size in enumerate(self.sizes):
            f.addMap(int(size), np.asarray(p[f"map_{k}"], np.float64).T.ravel().tolist())
        for m, row in zip(np.asarray(self.map_index), np.asarray(self.atoms), strict=True):
            f.addTorsion(int(m), *map(int, row))
        return f


jax.tree_util.register_dataclass(CMAPTorsionTerm, data_fields=["atoms", "map_index"],
                                 meta_fields=["name", "sizes", "periodic"])


def import_cmap(force, name: str, periodic: bool):
    """(CMAPTorsionTerm, params) of an ``openmm.CMAPTorsionForce``."""
    sizes, params = [], {}
    for k in range(force.getNumMaps()):
        size, energy = force.getMapParameters(k)
        energy = np.array([float(getattr(e, "_value", e)) for e in energy])
        sizes.append(int(size))
        params[f"map_{k}"] = energy.reshape(size, size).T  # energy[i + size j] = G[i, j]
    t = force.getNumTorsions()
    atoms = np.zeros((t, 8), np.int32)
    index = np.zeros(t, np.int32)
    for k in range(t):
        row = force.getTorsionParameters(k)
        index[k] = row[0]
        atoms[k] = row[1:9]
    return CMAPTorsionTerm(name, atoms, index, tuple(sizes), periodic=periodic), params
