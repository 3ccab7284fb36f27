"""QM geometries of many molecules through one compiled program (setup once, then pure JAX).

The records' systems are stacked into size buckets (``system/batch.py``); every geometry of
every record is one row of its bucket, carrying the index of its molecule. Energies and forces
of all geometries are one ``vmap`` per bucket inside one ``jit``: a data set of many molecules
compiles once per bucket shape, not once per molecule (and is not unrolled molecule by
molecule into one huge program).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.system import structure as st
from chronograd.system.batch import stack_systems


def geometry_energies(structures, positions, molecules, theta):
    """Per bucket (U [G] kJ/mol, dU/dx [G, N, 3]) for geometries ``positions`` [G, N, 3] of
    the bucket's molecules ``molecules`` [G] (pure)."""
    out = []
    for s, x, idx in zip(structures, positions, molecules, strict=True):
        def one(i, xx, s=s):
            si = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[i], s)
            return jax.value_and_grad(lambda y: st.total_energy(si, y, None, theta))(xx)

        out.append(jax.vmap(one)(idx, x))
    return tuple(out)


_GEOMETRY_ENERGIES = jax.jit(geometry_energies)


class QMGeometries:
    """Geometries of several records (one molecule each) laid out by bucket.

    Args:
        systems: one System per record (one force field, vacuum).
        positions: per record, its geometries [G_m, n_m, 3] nm.
        names: record ids (named in errors).

    Raises InputError (from ``stack_systems``) when the systems cannot share a batch.
    """

    def __init__(self, systems, positions, names):
        self.batch = stack_systems(systems, names=list(names))
        self.structures = self.batch.structures()
        xs, idxs = [], []
        # where[m] = (bucket, first row, count); atoms[m] = n_atoms of record m
        self.where = [None] * len(systems)
        self.atoms = [s.n_atoms for s in systems]
        for b, bucket in enumerate(self.batch.buckets):
            rows_x, rows_i = [], []
            for row, m in enumerate(bucket.members):
                g = np.asarray(positions[m], np.float64)
                self.where[m] = (b, len(rows_x), len(g))
                for x in g:
                    padded = np.zeros((bucket.n_padded, 3))
                    padded[: len(x)] = x
                    rows_x.append(padded)
                    rows_i.append(row)
            xs.append(jnp.asarray(np.stack(rows_x)) if rows_x
                      else jnp.zeros((0, bucket.n_padded, 3)))
            idxs.append(jnp.asarray(np.asarray(rows_i, np.int32)))
        self.positions, self.molecules = tuple(xs), tuple(idxs)
        sizes = [len(x) for x in xs]
        self.bucket_start = np.concatenate([[0], np.cumsum(sizes)])[:-1]
        self.n_padded = [b.n_padded for b in self.batch.buckets]

    def evaluate(self, theta):
        """Per bucket (U [G], dU/dx [G, N, 3]) (pure; use inside jit)."""
        return geometry_energies(self.structures, self.positions, self.molecules, theta)

    def energies_forces(self, theta) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per record (U [G_m] kJ/mol, F [G_m, n_m, 3] kJ/mol/nm) (host)."""
        per = _GEOMETRY_ENERGIES(self.structures, self.positions, self.molecules, theta)
        per = [(np.asarray(u), np.asarray(g)) for u, g in per]
        out = []
        for m, (b, start, count) in enumerate(self.where):
            u, g = per[b]
            out.append((u[start:start + count], -g[start:start + count, : self.atoms[m]]))
        return out

    def energy_index(self, m: int) -> np.ndarray:
        """Indices of record ``m``'s geometries in the concatenation of all buckets' U."""
        b, start, count = self.where[m]
        return self.bucket_start[b] + start + np.arange(count)

    def force_index(self, m: int) -> np.ndarray:
        """Indices of record ``m``'s real force components ([G_m, n_m, 3] raveled) in the
        concatenation of all buckets' raveled dU/dx."""
        b, start, count = self.where[m]
        n_pad, n = self.n_padded[b], self.atoms[m]
        offset = sum(len(x) * self.n_padded[k] * 3 for k, x in enumerate(self.positions)
                     if k < b)
        g = start + np.arange(count)[:, None, None]
        a = np.arange(n)[None, :, None]
        c = np.arange(3)[None, None, :]
        return (offset + (g * n_pad + a) * 3 + c).ravel()
