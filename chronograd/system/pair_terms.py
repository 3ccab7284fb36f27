"""Pair-potential terms of particle systems: any pair kernel over species, in 2D or 3D.

:class:`PairPotentialTerm` evaluates ``sum over pairs f(r_ij, params[s_i, s_j])`` for a kernel
``f`` of ``potentials/kernels.py`` or a user's own ``PairKernel``. Its params are per-species:
each kernel parameter is a scalar, a [S] vector combined by a mixing rule inside the energy
(``arithmetic`` (a_i + a_j)/2 or ``geometric`` sqrt(a_i a_j); defaults: arithmetic for sigma,
geometric otherwise) or an explicit symmetric [S, S] species-pair table (binding energies
B_ab). Gradients reach every entry.

Pairs follow the pair policy (``pairs.py``): the term holds the explicit candidate pairs (all
i < j pairs less exclusions; minimum image when periodic), masked by the cutoff inside the
energy, or, for a 3D periodic system above ``MAX_EXPLICIT_PAIR_PARTICLES`` particles, uses the
neighbor list that dynamics and minimization keep (with a skin) and pass in, or, when called
without one, builds a list inside the energy (overflow gives NaN, never a truncated sum). ``shift``
subtracts f(cutoff) so the energy is continuous at the cutoff. Padded particles have species
-1 and padded pairs hold the index N: both contribute exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.potentials.kernels import PAIR_KERNELS, PairKernel
from chronograd.potentials.pair import pair_sum, safe_sqrt
from chronograd.space.neighbor_list import in_trace_pairs, unskinned_list_fns
from chronograd.space.positions import COINCIDENT_NM
from chronograd.system.pairs import MAX_EXPLICIT_PAIR_PARTICLES

MIXING_RULES = ("arithmetic", "geometric")


def default_mixing(param: str) -> str:
    return "arithmetic" if param == "sigma" else "geometric"


@dataclass(frozen=True, eq=False)
class PairPotentialTerm:
    """``kernel`` over particle pairs; static: name, kernel, n_species, cutoff, shift,
    periodic, dim, mixing ((param, rule), ...), neighbors (in-trace list spec or None),
    exclusions (tuple of pairs, for the in-trace list); data: species [N], pairs [P, 2]."""

    name: str
    species: np.ndarray
    pairs: np.ndarray
    kernel: PairKernel
    n_species: int
    cutoff: float | None = None
    shift: bool = False
    periodic: bool = False
    dim: int = 3
    mixing: tuple = ()
    neighbors: tuple | None = None
    exclusions: tuple = ()
    kind = "pair_potential"

    @property
    def report(self) -> str:
        return self.kernel.name

    @property
    def allows_overlap(self) -> bool:
        return self.kernel.finite_at_zero

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.kernel.params

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def check_box(self, box, where: str = "") -> None:
        if self.periodic and self.cutoff is not None:
            from chronograd.space.periodic import check_cutoff_fits

            check_cutoff_fits(box, self.cutoff, self.name, where)

    def check_overlaps(self, positions, box, where: str = "") -> None:
        """A kernel that is not finite at r = 0 refuses coincident particles, naming them
        (a k-d tree: O(N log N), whatever the size; excluded pairs may coincide)."""
        if self.kernel.finite_at_zero:
            return
        from scipy.spatial import cKDTree

        x = np.asarray(positions, np.float64)
        if box is not None and np.allclose(box, np.diag(np.diag(box))):  # wrap: images too
            lengths = np.diag(np.asarray(box, np.float64))
            wrapped = np.mod(x, lengths)
            tree = cKDTree(np.where(wrapped >= lengths, 0.0, wrapped), boxsize=lengths)
        else:
            tree = cKDTree(x)
        close = tree.query_pairs(COINCIDENT_NM, output_type="ndarray")
        excluded = {tuple(sorted(p)) for p in self.exclusions}
        close = [tuple(sorted(map(int, p))) for p in close]
        close = sorted(p for p in close if p not in excluded)
        if close:
            at = f"{where}: " if where else ""
            a, b = close[0]
            raise InputError(
                f"{at}term {self.name!r}: particles {a} and {b} overlap (r < {COINCIDENT_NM})"
                f" and the {self.kernel.name} kernel is not finite at r = 0; move them apart or"
                " use a kernel that allows overlaps (soft_sphere, gaussian, morse)")

    def pair_params(self, params, si, sj) -> dict:
        """Per-pair parameters from scalars, [S] vectors (mixed) or [S, S] tables."""
        rules = dict(self.mixing)
        out = {}
        for name in self.kernel.params:
            v = jnp.asarray(params[name])
            if v.ndim == 0:
                out[name] = v
            elif v.ndim == 1:
                rule = rules.get(name, default_mixing(name))
                out[name] = (0.5 * (v[si] + v[sj]) if rule == "arithmetic"
                             else safe_sqrt(v[si] * v[sj]))
            else:
                out[name] = (0.5 * (v + v.T))[si, sj]  # symmetric table, symmetric gradient
        return out

    def _pair_kernel(self, r, a_i, a_j, params):
        """(U,) of pairs at distance r inside the cutoff; pairs with a species of -1 count 0."""
        si, sj = a_i["species"], a_j["species"]
        valid = (si >= 0) & (sj >= 0)
        pp = self.pair_params(params, jnp.maximum(si, 0), jnp.maximum(sj, 0))
        safe_r = self.cutoff if self.cutoff is not None else 1.0
        e = self.kernel.fn(jnp.where(valid, r, safe_r), **pp)
        if self.shift and self.cutoff is not None:
            e = e - self.kernel.fn(jnp.full_like(r, self.cutoff), **pp)
        return (jnp.where(valid, e, 0.0),)

    def _pairs(self, positions, box, pairs=None):
        if pairs is not None and self.neighbors is not None:  # the system's skinned list
            return pairs, jnp.asarray(False)
        if self.neighbors is None:
            p = jnp.asarray(self.pairs)
            return (p[:, 0], p[:, 1]), jnp.asarray(False)
        return in_trace_pairs(positions, box, float(self.cutoff), self.neighbors,
                              self.exclusions)

    def energy_terms(self, positions, box, params, pairs=None):
        box = box if self.periodic else None
        (i, j), overflow = self._pairs(positions, box, pairs)
        shared = {name: params[name] for name in self.kernel.params}
        (energy,) = pair_sum(self._pair_kernel, positions, box, (i, j),
                             {"species": jnp.asarray(self.species)}, shared,
                             cutoff=self.cutoff,
                             safe_r=self.cutoff if self.cutoff is not None else 1.0)
        return {self.report: jnp.where(overflow, jnp.nan, energy)}


jax.tree_util.register_dataclass(
    PairPotentialTerm, data_fields=["species", "pairs"],
    meta_fields=["name", "kernel", "n_species", "cutoff", "shift", "periodic", "dim", "mixing",
                 "neighbors", "exclusions"])


def resolve_kernel(kernel) -> PairKernel:
    """A PairKernel from a name of ``PAIR_KERNELS`` or a PairKernel."""
    if isinstance(kernel, PairKernel):
        return kernel
    if isinstance(kernel, str) and kernel in PAIR_KERNELS:
        return PAIR_KERNELS[kernel]
    raise InputError(f"unknown pair kernel {kernel!r}; built in: {', '.join(PAIR_KERNELS)},"
                     " or pass chronograd.potentials.kernels.PairKernel(name, fn, params)")


def explicit_particle_pairs(n: int, exclusions=None) -> np.ndarray:
    """All i < j pairs less ``exclusions`` [E, 2], [P, 2] int32."""
    i, j = np.triu_indices(n, 1)
    if exclusions is not None and len(exclusions):
        ex = np.sort(np.asarray(exclusions, np.int64).reshape(-1, 2), axis=1)
        keep = ~np.isin(i.astype(np.int64) * n + j, ex[:, 0] * n + ex[:, 1])
        i, j = i[keep], j[keep]
    return np.stack([i, j], axis=1).astype(np.int32)


def uses_in_trace_list(n: int, periodic: bool, dim: int, cutoff) -> bool:
    """Explicit pairs up to MAX_EXPLICIT_PAIR_PARTICLES; a neighbor list beyond (3D periodic
    with a cutoff only; otherwise a larger system is refused by ``pair_term``)."""
    return n > MAX_EXPLICIT_PAIR_PARTICLES and periodic and dim == 3 and cutoff is not None


def in_trace_spec(n: int, cutoff: float, box) -> tuple:
    """(max neighbors per row, cell dims, cell capacity) for twice the system's mean density
    (a local compression beyond that overflows and gives NaN, never a truncated sum)."""
    import math

    density = 2.0 * n / float(np.linalg.det(np.asarray(box, np.float64)))
    shell = 4.0 / 3.0 * math.pi * cutoff ** 3 * density
    rows = int(min(n - 1, math.ceil(0.5 * shell * 1.25) + 8))
    sized = unskinned_list_fns(n, cutoff).sized(np.asarray(box), max_neighbors=rows,
                                                     density=density)
    return (rows, sized.cell_dims, sized.cell_capacity)
