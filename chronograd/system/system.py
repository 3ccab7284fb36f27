"""System: static energy terms (index arrays) + a parameter pytree, and its energy functions.

``System.energy_fn()`` returns the pure function ``U(positions, box, params) -> kJ/mol`` that
everything else (forces, Hessians, parameter gradients, dynamics) is derived from by JAX.
The system's structure (``system.structure``) is a pytree of arrays: the host conveniences
(``energy``, ``energy_terms``, ``energy_and_forces``) pass it into module-level compiled
functions, so systems whose arrays have the same shapes share one compiled program. Pairs
follow the one policy of ``pairs.py``: a cutoff means a neighbor list, no cutoff an explicit
sparse pair list.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.space.neighbor_list import NeighborListFns, neighbor_list
from chronograd.space.periodic import check_reduced_box
from chronograd.space.positions import check_positions
from chronograd.system import structure as st
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.pairs import (
    MAX_PARTICLE_DENSITY,
    list_owner,
    neighbors_per_row,
    uses_neighbor_list,
)
from chronograd.system.virtual_sites import place_virtual_sites


def _host_terms(structure, positions, box, params, neighbors):
    pairs = None if neighbors is None else neighbors.pairs()
    return st.energy_terms(structure, positions, box, params, pairs)


def _host_total(structure, positions, box, params, neighbors):
    pairs = None if neighbors is None else neighbors.pairs()
    return st.total_energy(structure, positions, box, params, pairs)


# Compiled once per structure shape and options (not per system): see contract 3.
_TERMS_JIT = jax.jit(_host_terms)
_TOTAL_JIT = jax.jit(_host_total)
_VALUE_AND_GRAD_JIT = jax.jit(jax.value_and_grad(_host_total, argnums=1))
# One program, not one dispatch per slot-map operation. It runs once per export or report
# (gathers and scatters, no arithmetic worth optimizing), so it is compiled without LLVM's
# optimization passes: about half the compile time (0.4 vs 0.6-1.1 s per molecule).
_SLOTS_JIT = jax.jit(st.slots_of, compiler_options={"xla_backend_optimization_level": 0})


@dataclass(frozen=True, eq=False)
class System:
    """A differentiable molecular system.

    Attributes:
        masses: [N] amu.
        terms: energy terms (static index arrays and options).
        params: the parameters U is differentiated in. Without a ``source`` they are the system
            slots themselves, ``params[term.name][attribute]`` -> array (e.g. imported from
            OpenMM); with one they are what the source consumes (a force field's theta).
        source: a ParameterSource, ``source(params) -> slots`` evaluated inside the traced
            energy (slot maps of a force field, a neural network, ...), or None.
        box: default periodic box vectors [3, 3] nm (rows, OpenMM reduced form), or None.
        constraints: [C, 2] int atom pairs held at ``constraint_distances`` [C] nm.
        virtual_sites: VirtualSites groups; their positions are recomputed from their parents
            inside every energy evaluation (whatever positions are passed in for them).
    """

    masses: np.ndarray
    terms: tuple
    params: dict
    box: np.ndarray | None = None
    constraints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32))
    constraint_distances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    source: object = None
    virtual_sites: tuple = ()
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_atoms(self) -> int:
        return int(self.masses.shape[0])

    @property
    def nonbonded(self) -> NonbondedTerm | None:
        found = [t for t in self.terms if isinstance(t, NonbondedTerm)]
        return found[0] if found else None

    @property
    def virtual_site_indices(self) -> np.ndarray:
        """Sorted particle indices of the virtual sites."""
        if not self.virtual_sites:
            return np.zeros(0, np.int64)
        return np.sort(np.concatenate([np.asarray(vs.sites, np.int64)
                                       for vs in self.virtual_sites]))

    @property
    def dim(self) -> int:
        """Spatial dimension: 3, or 2 for a two-dimensional particle system."""
        return next((int(t.dim) for t in self.terms if hasattr(t, "dim")), 3)

    @property
    def periodic(self) -> bool:
        nb = self.nonbonded
        return bool(nb is not None and nb.periodic) or any(
            getattr(t, "periodic", False) for t in self.terms if t is not nb
        )

    def term_names(self) -> tuple[str, ...]:
        """Names of the energy terms this system reports (physics names, each once)."""
        return st.term_names(self.structure)

    @property
    def structure(self) -> st.SystemStructure:
        """The static structure as a pytree of arrays (terms, source, virtual sites)."""
        if "structure" not in self._cache:
            self._cache["structure"] = st.structure_of(self.terms, self.source,
                                                       self.virtual_sites)
        return self._cache["structure"]

    @property
    def uses_neighbor_list(self) -> bool:
        """True when nonbonded pairs come from a neighbor list (the system has a cutoff)."""
        return uses_neighbor_list(self)

    def with_params(self, params) -> System:
        """The same system with another parameter pytree."""
        return replace(self, params=params, _cache={})

    def with_fft_pme_grid(self) -> System:
        """The same system with its PME grids rounded up to FFT-friendly sizes.

        Each axis of the Coulomb (and LJPME dispersion) grid becomes the smallest size >= its
        own with no prime factor above 7 except one 11 (``ewald.fft_dimension``): the sizes
        OpenMM's CPU platform runs (it rounds every grid it is given this way), where the
        Reference platform, and chronograd by default, use the derived size itself (41^3
        becomes 42^3, 89^3 becomes 90^3). A finer grid only lowers the PME error. The grids
        are then explicit, so ``to_openmm`` passes them on and every OpenMM platform uses
        the same ones. A system without PME is returned unchanged.
        """
        from chronograd.potentials.ewald import fft_grid

        nb = self.nonbonded
        if nb is None or nb.method not in ("PME", "LJPME"):
            return self
        changes = {"grid": fft_grid(nb.grid), "explicit_pme_parameters": True}
        if nb.method == "LJPME":
            changes.update(lj_grid=fft_grid(nb.lj_grid), explicit_lj_pme_parameters=True)
        terms = tuple(replace(t, **changes) if t is nb else t for t in self.terms)
        return replace(self, terms=terms, _cache={})

    def slots(self, params=None):
        """System slot values ``{term: {attribute: array}}`` for ``params`` (default: own)."""
        params = self.params if params is None else params
        return params if self.source is None else _SLOTS_JIT(self.structure, params)

    # ---- pure energy functions -------------------------------------------------------------

    def energy_terms_fn(self, *, neighbor_list: bool = False):
        """Pure ``terms(positions, box, params[, neighbors]) -> dict[str, kJ/mol]``.

        With a cutoff and no ``neighbors`` passed, the neighbor list is built inside the
        function for every call (memory O(N)), with row capacities sized for the densest
        matter (``pairs.MAX_PARTICLE_DENSITY``); a denser input gives NaN energies, never a
        silently truncated sum.
        """
        return self._pure_fn("terms", neighbor_list)

    def _pure_fn(self, what: str, neighbor_list: bool):
        """``energy_terms_fn`` (``what`` "terms") or ``energy_fn`` ("total": the same sum as
        one program per term, e.g. the nonbonded pairs as one kernel output)."""
        key = (what, bool(neighbor_list))
        if key in self._cache:  # one function object per system: a stable key for jit caches
            return self._cache[key]
        structure = self.structure
        in_trace = None
        nb = self.nonbonded
        if nb is not None and nb.uses_cutoff:  # (a pair term builds its own, sized by density)
            fns, skeleton = self._in_trace_neighbors()

            @jax.jit  # once per system: the neighbor-list functions are closures
            def in_trace(positions, box, params):
                slots = st.slots_of(structure, params)
                x = st.place_sites(structure, positions, slots)
                built = fns.rebuild(jax.lax.stop_gradient(x), skeleton, box)
                if what == "total":
                    out = st.total_of_terms(structure, x, box, slots, built.pairs())
                else:
                    out = st.term_energies(structure, x, box, slots, built.pairs())
                return jax.tree_util.tree_map(
                    lambda v: jnp.where(built.did_overflow, jnp.nan, v), out)

        # Compiled programs shared by every system of the same shapes (the structure is an
        # argument), so calling U eagerly, or jax.grad(U) outside jit, runs compiled code.
        compiled = _TOTAL_JIT if what == "total" else _TERMS_JIT

        def pure(positions, box, params, neighbors=None):
            if neighbors is not None or in_trace is None:
                return compiled(structure, positions, box, params, neighbors)
            return in_trace(positions, box, params)

        fn = pure if neighbor_list else (
            lambda positions, box, params: pure(positions, box, params))
        self._cache[key] = fn
        return fn

    def _in_trace_neighbors(self):
        """(neighbor-list functions with no skin, an unbuilt list sized by density)."""
        if "in_trace_nl" not in self._cache:
            nb = self.nonbonded
            fns = self.neighbor_list(skin=0.0)
            skeleton = fns.sized(self.box, max_neighbors=neighbors_per_row(
                nb.cutoff, 0.0, self.n_atoms), density=MAX_PARTICLE_DENSITY)
            self._cache["in_trace_nl"] = (fns, skeleton)
        return self._cache["in_trace_nl"]

    def energy_fn(self, *, neighbor_list: bool = False):
        """Pure potential energy function, kJ/mol.

        Returns ``U(positions [N,3] nm, box [3,3] nm | None, params)`` or, with
        ``neighbor_list=True``, ``U(positions, box, params, neighbors)`` where ``neighbors``
        comes from ``system.neighbor_list()``. Both are jit-able and differentiable in
        positions, box and params; memory is O(N) for systems with a cutoff. U equals the sum
        of ``energy_terms_fn``'s values (to rounding).
        """
        return self._pure_fn("total", neighbor_list)

    def neighbor_list(self, *, skin: float = 0.1, capacity_multiplier: float = 1.15):
        """Neighbor list for this system's cutoff (the nonbonded term's, with its exceptions
        excluded, or a large periodic particle system's pair term's; ``pairs.list_owner``).

        ``capacity_multiplier``: every row is this much wider than the widest row at
        allocation. 1.15, not JAX MD's 1.25 (``space.neighbor_list``'s default): the pair pass
        costs in proportion to the width, 9-13 % less at 1.15 (RESULTS "scaling-levers"), and
        a liquid's widest row drifts ~1.04x over 6 ps of MD; a drift past it overflows the
        list, which is detected and regrown (same result, one more compile). The cell grid
        keeps 1.25x over its fullest cell (cells hold ~10 atoms, rows hundreds)."""
        owner = list_owner(self)
        if owner is None:
            raise InputError(
                "this system has no nonbonded cutoff, so a neighbor list does not apply;"
                " its pairs are the explicit list held by the nonbonded term"
            )
        cutoff, exclusions = owner
        key = ("nl", skin, capacity_multiplier)
        if key not in self._cache:
            self._cache[key] = neighbor_list(
                self.n_atoms,
                cutoff,
                skin=skin,
                exclusions=exclusions,
                capacity_multiplier=capacity_multiplier,
                cell_capacity_multiplier=max(1.25, capacity_multiplier),
            )
        fns: NeighborListFns = self._cache[key]
        return fns

    # ---- host-side conveniences ------------------------------------------------------------

    def check_inputs(self, positions, box=None, *, where: str | None = None):
        """Validate positions (and box) on the host; returns float64 arrays.

        Raises InputError naming the first bad atom (non-finite, or two atoms at the same
        position), or explaining a missing box; ``where`` (e.g. the file the positions came
        from) starts the message.
        """
        at = f"{where}: " if where else ""
        pos = np.asarray(positions, dtype=np.float64)
        dim = self.dim
        if pos.ndim != 2 or pos.shape[1] != dim:
            raise InputError(f"{at}positions must have shape (N, {dim}) in nm, got {pos.shape}")
        sites = self.virtual_site_indices
        if sites.size and pos.shape[0] == self.n_atoms - sites.size:
            # positions of the real atoms only: the virtual sites are placed from their parents
            full = np.zeros((self.n_atoms, 3))
            full[np.setdiff1d(np.arange(self.n_atoms), sites)] = pos
            pos = full
        if pos.shape[0] != self.n_atoms:
            extra = (f" (or {self.n_atoms - sites.size} without its {sites.size} virtual sites)"
                     if sites.size else "")
            raise InputError(
                f"{at}the system has {self.n_atoms} particles{extra} but {pos.shape[0]}"
                " positions were given"
            )
        # particles may coincide when every term is finite there (soft spheres, springs) or
        # checks its own pairs (pair terms name themselves and their kernel)
        overlap_ok = bool(self.terms) and all(
            getattr(t, "allows_overlap", False) or hasattr(t, "check_overlaps")
            for t in self.terms)
        check_positions(pos, where=where, skip=sites, dim=dim, allow_overlap=overlap_ok)
        if box is None:
            box = self.box
        if box is not None:
            box = check_reduced_box(box, where=f"{at}box", dim=dim)
        for term in self.terms:
            if hasattr(term, "check_overlaps"):  # kernels not finite at r = 0
                term.check_overlaps(pos, box if getattr(term, "periodic", False) else None,
                                    where=where or "")
        if box is None:
            if self.periodic:
                raise InputError(
                    f"{at}this system is periodic (PME, Ewald or a periodic cutoff) but no box"
                    " was given and it has no default box; pass box vectors in nm"
                )
            return pos, None
        nb = self.nonbonded
        if nb is not None and nb.periodic and nb.cutoff > 0.5 * float(np.min(np.diag(box))):
            raise InputError(
                f"the nonbonded cutoff {nb.cutoff} nm is more than half the box width"
                f" ({float(np.min(np.diag(box))):.4f} nm); the minimum-image convention needs a"
                " larger box or a shorter cutoff"
            )
        for term in self.terms:
            if hasattr(term, "check_box"):  # e.g. a learned potential's own cutoff
                term.check_box(box, where=f"{at}box")
        return pos, box

    def _evaluate(self, what: str, positions, box, params):
        pos, box = self.check_inputs(positions, box)
        params = self.params if params is None else params
        nbrs = None
        if self.uses_neighbor_list:
            if self.virtual_sites:
                pos = np.asarray(place_virtual_sites(jnp.asarray(pos), self.virtual_sites,
                                                     self.slots(params)))
            nbrs = self.neighbor_list().allocate(pos, box)
        pos_j = jnp.asarray(pos)
        box_j = None if box is None else jnp.asarray(box)
        fn = _TERMS_JIT if what == "terms" else _VALUE_AND_GRAD_JIT
        return fn(self.structure, pos_j, box_j, params, nbrs)

    def energy_terms(self, positions, box=None, params=None) -> dict[str, float]:
        """Energy of each term, kJ/mol (host floats)."""
        out = self._evaluate("terms", positions, box, params)
        return {k: float(v) for k, v in out.items()}

    def energy(self, positions, box=None, params=None) -> float:
        """Total potential energy, kJ/mol."""
        return float(self._evaluate("grad", positions, box, params)[0])

    def energy_and_forces(self, positions, box=None, params=None) -> tuple[float, np.ndarray]:
        """(energy kJ/mol, forces [N, 3] kJ/mol/nm)."""
        e, g = self._evaluate("grad", positions, box, params)
        return float(e), -np.asarray(g)
