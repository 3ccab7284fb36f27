"""Many systems, one compiled program: padding to a few size buckets, stacking, ``vmap``.

``stack_systems(systems)`` sorts the systems by size into at most ``n_buckets`` buckets (about
one per doubling of the atom count: each bucket is one more program to compile), pads
every array of a bucket (atoms, bonds, angles, torsions, exceptions, pairs, slot-map entries)
to the bucket's sizes and stacks them along a leading molecule axis. Padding is exact: padded
atoms appear in no term; padded term rows hold the index N (one past the last atom) and are
masked inside the potentials with the double-``where`` trick; padded slot-map entries have
factor 0. So padded entries contribute exactly 0 to energies, forces and dU/dtheta.

Force-field parameters theta are shared across the batch (one force field), so dU/dtheta of a
whole data set is one reverse pass. The compiled functions take the stacked structures as
arguments (contract 3 of ARCHITECTURE.md): one compile per set of bucket shapes, whatever the
molecules.

    batch = cg.stack_systems([ff.create_system(m) for m in molecules])
    energies = batch.energies(positions)            # list of [n_i, 3] nm -> [M] kJ/mol
    terms = batch.energy_terms(positions)           # {term: [M]}
    energies, forces = batch.energies_and_forces(positions)
    grad = batch.param_gradient(positions)          # d(sum of energies)/dtheta, theta's pytree
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.system import structure as st
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.slot_map import SlotMap
from chronograd.system.source import ExceptionRule, ForceFieldSource

_ROUND = 8  # every padded size is a multiple of this, so batches of similar data share shapes


def _round_up(n: int) -> int:
    return max(_ROUND, int(math.ceil(n / _ROUND)) * _ROUND)


def _name(system, k: int, names) -> str:
    return names[k] if names is not None else f"system {k}"


# ---- sizes and padding of one system ----------------------------------------------------------

def _sizes(system) -> dict:
    """Every array length of a system that padding changes, by a stable key."""
    out = {"atoms": system.n_atoms}
    for term in system.terms:
        if isinstance(term, NonbondedTerm):
            out[(term.name, "exceptions")] = len(term.exception_atoms)
            out[(term.name, "pairs")] = len(term.pairs)
            out[(term.name, "classes")] = len(term.lj_class_counts)
        elif _is_potential_term(term):
            out[(term.name, "pairs")] = len(term.pairs)
        else:
            out[(term.name, "rows")] = len(term.atoms)
    source = _ff_part(system.source)
    for t, attrs in source.maps.items():
        for a, m in attrs.items():
            out[(t, a, "entries")] = len(m.row)
    for rule in source.rules:
        if isinstance(rule, ExceptionRule):
            out[(rule.term, "rule")] = len(rule.atoms)
    if _is_learned(system.source):  # the predictor's graph and pooled index rows
        g, index = _inner(system.source).graph, _inner(system.source).index
        out[("graph", "edges")] = len(g.edge_mask)
        out[("graph", "components")] = len(g.component_charge)
        for field, rows in index._asdict().items():
            out[("index", field)] = len(rows)
    return out


def _is_potential_term(term) -> bool:
    return getattr(term, "kind", None) == "neural_potential"


def _inner(source):
    """The source under a learned potential's (which adds the network's weights)."""
    from chronograd.ml.potential_term import PotentialSource

    return source.base if isinstance(source, PotentialSource) else source


def _is_learned(source) -> bool:
    source = _inner(source)
    return hasattr(source, "forcefield") and hasattr(source, "graph")


def _ff_part(source):
    """The ForceFieldSource of a system (itself, or the force-field part of a learned one)."""
    source = _inner(source)
    return source.forcefield if _is_learned(source) else source


def _pad_rows(a, size: int, fill) -> np.ndarray:
    a = np.asarray(a)
    pad = [(0, size - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return np.pad(a, pad, constant_values=fill)


def _slot_size(term, attribute: str, sizes: dict) -> int:
    """Padded length of the slot array ``attribute`` of ``term``."""
    if isinstance(term, NonbondedTerm):
        if attribute.startswith("exception_"):
            return sizes[(term.name, "exceptions")]
        return sizes["atoms"]
    return sizes[(term.name, "rows")]


def _pad_system(system, sizes: dict) -> st.SystemStructure:
    """The system's structure with every array padded to ``sizes`` (exact zero padding)."""
    n = sizes["atoms"]
    terms, by_name = [], {}
    for term in system.terms:
        if isinstance(term, NonbondedTerm):
            new = replace(
                term, n_atoms=n,
                exception_atoms=_pad_rows(term.exception_atoms,
                                          sizes[(term.name, "exceptions")], n).astype(np.int32),
                pairs=_pad_rows(term.pairs, sizes[(term.name, "pairs")], n).astype(np.int32),
                lj_class=_pad_rows(term.lj_class, n, 0).astype(np.int32),
                lj_class_counts=_pad_rows(term.lj_class_counts, sizes[(term.name, "classes")], 0))
        elif _is_potential_term(term):  # padded atoms: species -1; padded pairs: index N
            new = replace(term, species=_pad_rows(term.species, n, -1).astype(np.int32),
                          pairs=_pad_rows(term.pairs, sizes[(term.name, "pairs")],
                                          n).astype(np.int32))
        else:
            rows = sizes[(term.name, "rows")]
            changes = {"atoms": _pad_rows(term.atoms, rows, n).astype(np.int32)}
            if getattr(term, "periodicity", None) is not None:
                changes["periodicity"] = _pad_rows(term.periodicity, rows, 1).astype(np.int32)
            new = replace(term, **changes)
        terms.append(new)
        by_name[term.name] = term
    source = _ff_part(system.source)
    maps = {}
    for t, attrs in source.maps.items():
        maps[t] = {}
        for a, m in attrs.items():
            n_slots = _slot_size(by_name[t], a, sizes)
            k = sizes[(t, a, "entries")]
            maps[t][a] = SlotMap(n_slots, _pad_rows(m.slot, k, 0), _pad_rows(m.row, k, 0),
                                 _pad_rows(m.factor, k, 0.0), _pad_rows(m.constant, n_slots, 0.0))
    frozen = {t: {a: _pad_rows(v, _slot_size(by_name[t], a, sizes), 0.0)
                  for a, v in attrs.items()} for t, attrs in source.frozen.items()}
    rules = []
    for rule in source.rules:
        e = sizes[(rule.term, "rule")]
        rules.append(ExceptionRule(rule.term, _pad_rows(rule.atoms, e, n).astype(np.int32),
                                   _pad_rows(rule.scale_coulomb, e, 0.0),
                                   _pad_rows(rule.scale_lj, e, 0.0)))
    padded = ForceFieldSource(maps, frozen, tuple(rules))
    if _is_learned(system.source):
        from chronograd.ml.graph import pad_graph

        learned = _inner(system.source)
        graph = pad_graph(learned.graph, n, sizes[("graph", "edges")],
                          sizes[("graph", "components")])
        index = type(learned.index)(**{
            f: _pad_rows(rows, sizes[("index", f)], n).astype(np.int32)
            for f, rows in learned.index._asdict().items()})
        padded = replace(learned, forcefield=padded, graph=graph, index=index)
    if _inner(system.source) is not system.source:  # a learned potential on top
        padded = replace(system.source, base=padded)
    return st.SystemStructure(tuple(terms), padded, ())


# ---- checks -------------------------------------------------------------------------------------

def _signature(system) -> tuple:
    """What must agree between systems of one batch (besides array lengths)."""
    terms = []
    for t in system.terms:
        if isinstance(t, NonbondedTerm):
            terms.append(("nonbonded", t.name, t.method, t.cutoff, t.switch_distance,
                          t.report_names))
        elif _is_potential_term(t):
            terms.append(("potential", t.name, t.skeleton, t.cutoff, t.neighbors))
        else:
            terms.append((type(t).__name__, t.name, t.periodic))
    source = _ff_part(system.source)
    maps = tuple(sorted((t, tuple(sorted(a))) for t, a in source.maps.items()))
    frozen = tuple(sorted((t, tuple(sorted(a))) for t, a in source.frozen.items()))
    rules = tuple(type(r).__name__ for r in source.rules)
    learned = None
    if _is_learned(system.source):
        inner = _inner(system.source)
        learned = (inner.skeleton, inner.frozen, inner.name)
    potential = _inner(system.source) is not system.source
    return tuple(terms), maps, frozen, rules, learned, potential


def _check(systems, names) -> None:
    if not systems:
        raise InputError("stack_systems needs at least one system")
    first = None
    for k, s in enumerate(systems):
        what = _name(s, k, names)
        if not isinstance(_ff_part(s.source), ForceFieldSource):
            raise InputError(
                f"{what}: its parameters are not a force field's theta (it has"
                f" {'no source' if s.source is None else type(s.source).__name__}); a batch"
                " shares one force field's parameters; build every system with"
                " ForceField.create_system")
        if s.virtual_sites:
            raise InputError(f"{what}: has virtual sites, which batches do not pad yet;"
                             " evaluate it with system.energy")
        if s.uses_neighbor_list or any(_is_potential_term(t) and t.periodic
                                       for t in s.terms):
            raise InputError(
                f"{what}: is periodic or has a nonbonded cutoff; batches hold molecules"
                " without a cutoff (vacuum); evaluate periodic systems one by one")
        if first is None:
            first = (k, _signature(s), jax.tree_util.tree_structure(s.params),
                     [np.shape(x) for x in jax.tree_util.tree_leaves(s.params)])
            continue
        k0, sig0, tree0, shapes0 = first
        if (jax.tree_util.tree_structure(s.params) != tree0
                or [np.shape(x) for x in jax.tree_util.tree_leaves(s.params)] != shapes0):
            raise InputError(
                f"{what}: made from a different force field than {_name(systems[k0], k0, names)}"
                " (its parameter tree differs); a batch shares one force field")
        if _signature(s) != sig0:
            raise InputError(
                f"{what}: its terms or nonbonded options differ from those of"
                f" {_name(systems[k0], k0, names)} (e.g. a box, a cutoff or another charge"
                " model); stack only systems made the same way")


# ---- the batch ----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Bucket:
    """Systems padded to the same sizes: ``structure`` stacked along axis 0, ``members``
    their indices in the batch, ``n_atoms`` their real atom counts, ``n_padded`` N."""

    structure: st.SystemStructure
    members: np.ndarray
    n_atoms: np.ndarray
    n_padded: int


def _batched_terms(structures, positions, params):
    """Per bucket, {term: [B]} (pure; ``structures`` and ``positions`` are tuples)."""
    one = lambda s, x: st.energy_terms(s, x, None, params)  # noqa: E731
    return tuple(jax.vmap(one)(s, x) for s, x in zip(structures, positions, strict=True))


def _batched_total(structures, positions, params):
    """(sum of every energy, per-bucket energies [B])."""
    per = tuple(jax.vmap(lambda s, x: st.total_energy(s, x, None, params))(s, x)
                for s, x in zip(structures, positions, strict=True))
    return sum(jnp.sum(e) for e in per), per


def _batched_theta_gradients(structures, positions, params):
    """Per bucket, dU_m/dtheta of every member (theta's pytree with a leading [B] axis)."""
    grad = jax.grad(lambda th, s, x: st.total_energy(s, x, None, th))
    return tuple(jax.vmap(grad, in_axes=(None, 0, 0))(params, s, x)
                 for s, x in zip(structures, positions, strict=True))


# Module level: compiled once per bucket shapes, shared by every batch (contract 3).
_TERMS = jax.jit(_batched_terms)
_GRADS = jax.jit(jax.value_and_grad(_batched_total, argnums=(1, 2), has_aux=True))
_THETA_GRADS = jax.jit(_batched_theta_gradients)


class SystemBatch:
    """Systems of one force field, padded into size buckets and evaluated together.

    Positions are given as a list of [n_i, 3] arrays (nm), one per system, in the order the
    systems were stacked; results come back in that order.
    """

    def __init__(self, systems, buckets, names=None):
        self.systems = list(systems)
        self.buckets = tuple(buckets)
        self.names = names
        self.params = systems[0].params
        self.term_names = systems[0].term_names()

    def __len__(self) -> int:
        return len(self.systems)

    def structures(self) -> tuple:
        return tuple(b.structure for b in self.buckets)

    def pad_positions(self, positions) -> tuple:
        """Positions of every bucket, [B, N, 3] (padded atoms at the origin)."""
        if len(positions) != len(self.systems):
            raise InputError(f"{len(positions)} position arrays for {len(self.systems)}"
                             " systems; pass one [n_atoms, 3] array per system")
        out = []
        for b in self.buckets:
            x = np.zeros((len(b.members), b.n_padded, 3))
            for row, m in enumerate(b.members):
                x[row, : b.n_atoms[row]] = self.systems[m].check_inputs(
                    positions[m], where=_name(self.systems[m], m, self.names))[0]
            out.append(jnp.asarray(x))
        return tuple(out)

    def _scatter(self, per_bucket, *, atoms=False):
        out = [None] * len(self.systems)
        for b, values in zip(self.buckets, per_bucket, strict=True):
            values = np.asarray(values)
            for row, m in enumerate(b.members):
                out[m] = values[row, : b.n_atoms[row]] if atoms else values[row]
        return out

    def energies(self, positions, params=None) -> np.ndarray:
        """[M] total potential energy of each system, kJ/mol."""
        terms = self.energy_terms(positions, params)
        return np.sum([terms[k] for k in terms], axis=0)

    def energy_terms(self, positions, params=None) -> dict[str, np.ndarray]:
        """{term: [M] kJ/mol}."""
        params = self.params if params is None else params
        per = _TERMS(self.structures(), self.pad_positions(positions), params)
        return {name: np.asarray(self._scatter([p[name] for p in per]), np.float64)
                for name in self.term_names}

    def energies_and_forces(self, positions, params=None):
        """([M] kJ/mol, list of [n_i, 3] forces kJ/mol/nm)."""
        e, _, g = self._value_and_grads(positions, params)
        return e, [-f for f in g]

    def param_gradient(self, positions, params=None, *, per_system: bool = False):
        """d(sum of all energies)/dtheta as theta's pytree (one reverse pass); with
        ``per_system``, a list of every system's own dU/dtheta pytree."""
        params = self.params if params is None else params
        if not per_system:
            return self._value_and_grads(positions, params)[1]
        per = _THETA_GRADS(self.structures(), self.pad_positions(positions), params)
        out = [None] * len(self.systems)
        for b, tree in zip(self.buckets, per, strict=True):
            for row, m in enumerate(b.members):
                out[m] = jax.tree_util.tree_map(lambda a, r=row: np.asarray(a[r]), tree)
        return out

    def _value_and_grads(self, positions, params=None):
        params = self.params if params is None else params
        (_, per), (gx, gth) = _GRADS(self.structures(), self.pad_positions(positions), params)
        energies = np.asarray(self._scatter(per), np.float64)
        return energies, gth, [np.asarray(g) for g in self._scatter(gx, atoms=True)]


def stack_systems(systems, *, n_buckets: int = 4, names=None) -> SystemBatch:
    """Pad ``systems`` (made by one force field, no cutoff) into at most ``n_buckets`` size
    buckets, one per doubling of the atom count from the smallest system to the largest
    (systems within a factor 2 of each other share one); ``names`` (e.g. file names) label
    them in error messages.

    Raises InputError naming the first system that cannot join the batch (another force field,
    other options, a cutoff, virtual sites).
    """
    systems = list(systems)
    if names is not None and len(names) != len(systems):
        raise InputError(f"{len(names)} names for {len(systems)} systems")
    _check(systems, names)
    order = sorted(range(len(systems)), key=lambda k: systems[k].n_atoms)
    # One bucket per doubling of the atom count, at most n_buckets: a bucket wastes at most
    # about half its padding, and every bucket is one more copy of the program to compile.
    spread = systems[order[-1]].n_atoms / max(systems[order[0]].n_atoms, 1)
    doublings = math.ceil(math.log2(spread)) if spread > 1 else 1
    n_groups = max(1, min(int(n_buckets), len(systems), doublings))
    groups = [g for g in np.array_split(np.asarray(order, int), n_groups) if len(g)]
    buckets = []
    for group in groups:
        sizes = {}
        for k in group:
            for key, value in _sizes(systems[k]).items():
                sizes[key] = max(sizes.get(key, 0), value)
        sizes = {key: _round_up(v) for key, v in sizes.items()}
        if ("index", "propers") in sizes:  # a learned system: k_n for n = 1..6 per torsion
            from chronograd.ml.predictor import N_PERIODICITIES

            sizes[("ProperTorsions", "rows")] = N_PERIODICITIES * sizes[("index", "propers")]
        padded = [_pad_system(systems[k], sizes) for k in group]
        stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *padded)
        buckets.append(Bucket(stacked, np.asarray(group), np.asarray(
            [systems[k].n_atoms for k in group]), sizes["atoms"]))
    return SystemBatch(systems, buckets, names)
