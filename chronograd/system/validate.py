"""Checks of a System's arrays before anything is evaluated (setup layer).

JAX clamps out-of-range indices instead of failing, and a NaN parameter turns every energy into
NaN, so a System read from a file (``chronograd.load``, ``from_openmm``) is checked here once:
index ranges and shapes of every term, constraint and virtual site; parameter lengths that fit
the term; finite parameters, masses and options; non-negative masses. Errors name the source,
the term, the entry and the value.
"""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError
from chronograd.system.nonbonded import NonbondedTerm

_WIDTH = {"harmonic_bond": 2, "morse_bond": 2, "harmonic_angle": 3, "periodic_torsion": 4}


def _indices(source: str, what: str, atoms, width: int, n: int) -> np.ndarray:
    a = np.asarray(atoms)
    if a.size == 0:
        return a.reshape(0, width)
    if a.dtype.kind not in "iu" or a.ndim != 2 or a.shape[1] != width:
        raise InputError(f"{source}: {what} must be integer rows of {width} particle indices,"
                         f" got shape {a.shape} ({a.dtype})")
    bad = np.argwhere((a < 0) | (a >= n))
    if bad.size:
        row, col = bad[0]
        raise InputError(f"{source}: {what}[{row}] = {a[row].tolist()} refers to particle"
                         f" {int(a[row, col])}, but the system has {n} particles (indices 0 to"
                         f" {n - 1})")
    for c in range(1, width):
        same = np.flatnonzero(np.any(a[:, :c] == a[:, c:c + 1], axis=1))
        if same.size:
            raise InputError(f"{source}: {what}[{same[0]}] = {a[same[0]].tolist()} repeats a"
                             " particle")
    return a


def _values(source: str, what: str, values, length: int) -> None:
    v = np.asarray(values)
    if v.dtype.kind not in "fiu" or v.shape != (length,):
        raise InputError(f"{source}: {what} must be {length} numbers, got shape {v.shape}"
                         f" ({v.dtype})")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise InputError(f"{source}: {what}[{bad[0]}] is {v[bad[0]]}; parameters must be"
                         " finite")


def _finite_option(source: str, what: str, value, *, positive: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
    if ok:
        ok = bool(np.isfinite(value)) and (value > 0 if positive else True)
    if not ok:
        raise InputError(f"{source}: {what} = {value!r} must be a finite"
                         f"{' positive' if positive else ''} number")


def _check_nonbonded(source: str, term: NonbondedTerm, slots: dict, n: int) -> None:
    where = f"{source}: term {term.name!r}"
    if term.n_atoms != n:
        raise InputError(f"{where}: n_atoms = {term.n_atoms}, but the system has {n} particles")
    ex = _indices(where, "exception_atoms", term.exception_atoms, 2, n)
    for attr in ("charge", "sigma", "epsilon"):
        _values(where, attr, slots[attr], n)
    for attr in ("exception_charge_prod", "exception_sigma", "exception_epsilon"):
        _values(where, attr, slots[attr], ex.shape[0])
    cls = np.asarray(term.lj_class)
    counts = np.asarray(term.lj_class_counts)
    if (cls.shape != (n,) or cls.dtype.kind not in "iu" or counts.ndim != 1
            or counts.dtype.kind not in "iu" or (n and (cls.min() < 0
                                                       or cls.max() >= counts.shape[0]))):
        raise InputError(f"{where}: lj_class must give each of the {n} particles a class index"
                         f" into lj_class_counts ({counts.shape[0]} classes)")
    for name in ("cutoff", "reaction_field_dielectric", "ewald_error_tolerance"):
        _finite_option(where, name, getattr(term, name), positive=True)
    for name in ("alpha", "lj_alpha", "switch_distance"):
        _finite_option(where, name, getattr(term, name))
    if term.switch_distance is not None and not 0 <= term.switch_distance < term.cutoff:
        raise InputError(f"{where}: switch_distance {term.switch_distance} must lie in"
                         f" [0, cutoff = {term.cutoff})")
    for name in ("grid", "lj_grid"):
        grid = getattr(term, name)
        if grid is not None and (len(grid) != 3 or min(grid) < 1):
            raise InputError(f"{where}: {name} must be three positive integers, got {grid}")
    if term.method in ("PME", "LJPME", "Ewald") and term.grid is None:
        raise InputError(f"{where}: method {term.method} needs a grid")


def check_system(system, source: str) -> None:
    """Raise InputError naming ``source`` and the first bad entry of ``system``."""
    n = system.n_atoms
    masses = np.asarray(system.masses)
    if masses.ndim != 1 or masses.dtype.kind not in "fiu":
        raise InputError(f"{source}: masses must be a list of numbers (amu)")
    if n == 0:
        raise InputError(f"{source}: the system has no particles")
    bad = np.flatnonzero(~np.isfinite(masses) | (masses < 0))
    if bad.size:
        raise InputError(f"{source}: particle {bad[0]} has mass {masses[bad[0]]}; masses must be"
                         " finite and >= 0 amu (0 for virtual sites and fixed particles)")
    names = [t.name for t in system.terms]
    dup = [x for x in names if names.count(x) > 1]
    if dup:
        raise InputError(f"{source}: two terms are named {dup[0]!r}; term names must be unique")
    slots = system.slots()
    for term in system.terms:
        where = f"{source}: term {term.name!r}"
        if isinstance(term, NonbondedTerm):
            _check_nonbonded(source, term, slots[term.name], n)
            continue
        if hasattr(term, "validate"):  # terms that check themselves (custom, CMAP, GBSA)
            term.validate(where, slots[term.name], n)
            continue
        if term.kind in ("neural_potential", "pair_potential", "harmonic_trap"):  # built checked
            _indices(where, "pairs", term.pairs, 2, n)
            continue
        atoms = _indices(where, "atoms", term.atoms, _WIDTH[term.kind], n)
        for attr in term.param_names:
            _values(where, attr, slots[term.name][attr], atoms.shape[0])
        if term.kind == "periodic_torsion":
            per = np.asarray(term.periodicity)
            if per.shape != (atoms.shape[0],) or (per.size and (per.dtype.kind not in "iu"
                                                               or per.min() < 0)):
                raise InputError(f"{where}: periodicity must be {atoms.shape[0]} integers >= 0")
    cons = _indices(source, "constraints", system.constraints, 2, n)
    d = np.asarray(system.constraint_distances)
    if d.shape != (cons.shape[0],) or (d.size and not np.all(np.isfinite(d) & (d > 0))):
        raise InputError(f"{source}: constraint distances must be {cons.shape[0]} finite"
                         " positive numbers (nm)")
    seen: set[int] = set()
    for k, vs in enumerate(system.virtual_sites):
        where = f"{source}: virtual_sites[{k}]"
        parents = np.asarray(vs.parents)
        sites = _indices(where, "sites", np.asarray(vs.sites).reshape(-1, 1), 1, n).ravel()
        if parents.ndim != 2 or parents.shape[0] != sites.shape[0]:
            raise InputError(f"{where}: parents must have one row per site")
        _indices(where, "parents", parents, parents.shape[1], n)
        k_parents = parents.shape[1]
        want_parents = {"two_average": 2, "three_average": 3, "out_of_plane": 3}.get(vs.kind)
        if want_parents is not None and k_parents != want_parents:
            raise InputError(f"{where}: a {vs.kind} site has {want_parents} parents, got"
                             f" {k_parents}")
        width = {"two_average": 2, "three_average": 3, "out_of_plane": 3}.get(
            vs.kind, 3 * k_parents + 3)
        weights = np.asarray(vs.weights)
        if (weights.shape != (sites.shape[0], width) or weights.dtype.kind not in "fiu"
                or not np.all(np.isfinite(weights))):
            raise InputError(f"{where}: weights must be {sites.shape[0]} rows of {width} finite"
                             f" numbers, got shape {weights.shape}")
        again = seen.intersection(sites.tolist())
        if again or len(set(sites.tolist())) != sites.size:
            raise InputError(f"{where}: particle {sorted(again)[:1] or sites.tolist()} is defined"
                             " as a virtual site twice")
        seen.update(sites.tolist())
        if np.any(np.isin(parents, sites)):
            raise InputError(f"{where}: a virtual site is its own parent")
