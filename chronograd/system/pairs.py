"""The pair policy: which nonbonded pairs a system evaluates, decided here and nowhere else.

* A nonbonded cutoff (periodic or not: CutoffNonPeriodic, CutoffPeriodic, Ewald, PME, LJPME)
  means a neighbor list (``space/neighbor_list.py``) whatever the size: memory O(N).
* No cutoff (NoCutoff, molecules in vacuum) means an explicit sparse list of the
  non-excluded pairs, built once on the host and held by the term as data (so it is padded
  and batched like any other index array). It is allowed up to
  ``MAX_EXPLICIT_PAIR_PARTICLES`` particles; a larger system without a cutoff is refused with
  a message saying how to give it one, never silently made quadratic.
"""

from __future__ import annotations

import math

import numpy as np

from chronograd.errors import InputError
from chronograd.space.neighbor_list import exclusion_keys

# 3,000 particles -> 4.5 M pairs (36 MB of indices): a large ligand or a small protein in vacuum.
MAX_EXPLICIT_PAIR_PARTICLES = 3000

# Densest matter a neighbor list built inside an energy function is sized for, particles/nm^3
# (liquid water is ~100 atoms/nm^3); a denser region sets the overflow flag.
MAX_PARTICLE_DENSITY = 150.0


def explicit_pairs(n_atoms: int, exclusions) -> np.ndarray:
    """All i < j pairs that are not excluded, [P, 2] int32, for a system without cutoff.

    Raises InputError above ``MAX_EXPLICIT_PAIR_PARTICLES`` particles.
    """
    n = int(n_atoms)
    if n > MAX_EXPLICIT_PAIR_PARTICLES:
        raise InputError(
            f"a system of {n} particles without a nonbonded cutoff would need"
            f" {n * (n - 1) // 2:,} explicit pairs (limit: {MAX_EXPLICIT_PAIR_PARTICLES}"
            " particles); give it a cutoff (OpenMM NonbondedForce method CutoffNonPeriodic,"
            " or a periodic box with PME) so that a neighbor list is used")
    i, j = np.triu_indices(n, 1)
    keys = i.astype(np.int64) * n + j
    keep = ~np.isin(keys, exclusion_keys(exclusions, n))
    return np.stack([i[keep], j[keep]], axis=1).astype(np.int32)


def list_owner(system):
    """(cutoff, exclusions [E, 2]) of the term whose pairs come from the system's neighbor
    list, or None: the nonbonded term when it has a cutoff, else a pair term of a large
    periodic particle system (one that would otherwise build its list in every evaluation).
    Dynamics and minimization then keep a skinned list in their state for it."""
    nb = system.nonbonded
    if nb is not None:
        return (nb.cutoff, nb.exception_atoms) if nb.uses_cutoff else None
    for term in system.terms:
        if term.kind == "pair_potential" and term.neighbors is not None:
            return term.cutoff, np.asarray(term.exclusions, np.int64).reshape(-1, 2)
    return None


def uses_neighbor_list(system) -> bool:
    """True when ``system``'s pairs come from a neighbor list (see ``list_owner``)."""
    return list_owner(system) is not None


def choose_neighbor_list(system, requested: bool | None) -> bool:
    """Whether dynamics, minimization and estimators keep a neighbor list in their state.

    ``None`` (the default) follows the policy: yes exactly when the system has a cutoff.
    ``False`` with a cutoff builds the list afresh at every evaluation instead (same pairs,
    slower); ``True`` without a cutoff is an error.
    """
    has_cutoff = uses_neighbor_list(system)
    if requested is None:
        return has_cutoff
    if requested and not has_cutoff:
        raise InputError("neighbor_list=True needs a nonbonded cutoff; this system has none")
    return bool(requested)


def neighbors_per_row(cutoff: float, skin: float, n_atoms: int) -> int:
    """Row capacity of a half neighbor list sized for ``MAX_PARTICLE_DENSITY``."""
    shell = 4.0 / 3.0 * math.pi * (cutoff + skin) ** 3 * MAX_PARTICLE_DENSITY
    return int(max(1, min(n_atoms - 1, math.ceil(0.5 * shell * 1.25) + 8)))
