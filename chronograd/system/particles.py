"""Particle systems: positions, species, masses and a box, no molecule needed (2D or 3D).

    system = cg.particle_system(x, species, box=box, kernel="soft_sphere",
                                params={"sigma": [1.0, 1.4], "epsilon": 1.0, "alpha": 2.0})

gives an ordinary ``System``: energies, forces, Hessians, parameter gradients, dynamics,
minimization and every gradient estimator work on it. ``params`` are the kernel's parameters
per species (scalars, [S] vectors mixed per pair, or [S, S] tables) and become
``system.params["Pairs"]``; optional ``bonds`` (harmonic or Morse springs) become
``system.params["Bonds"]``.

Units: chronograd's units (nm, ps, amu, kJ/mol) are consistent with sigma = 1 nm,
epsilon = 1 kJ/mol, m = 1 amu giving the time unit sigma sqrt(m / epsilon) = 1 ps exactly, so a
system written in reduced Lennard-Jones units (sigma = epsilon = m = 1) needs no conversion at
all except for temperatures: a reduced temperature T* = k_B T / epsilon is
``units.reduced_temperature_to_kelvin(T*)`` K for the integrators.
"""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError
from chronograd.space.periodic import check_reduced_box
from chronograd.space.positions import check_positions
from chronograd.system.pair_terms import (
    MIXING_RULES,
    PairPotentialTerm,
    explicit_particle_pairs,
    in_trace_spec,
    resolve_kernel,
    uses_in_trace_list,
)
from chronograd.system.pairs import MAX_EXPLICIT_PAIR_PARTICLES
from chronograd.system.system import System
from chronograd.system.terms import HarmonicBondTerm, MorseBondTerm

PAIRS = "Pairs"
BONDS = "Bonds"
BOND_FORMS = {"harmonic": (HarmonicBondTerm, ("length", "k")),
              "morse": (MorseBondTerm, ("length", "depth", "alpha"))}


def _species_params(kernel, params, n_species: int, name: str) -> dict:
    if params is None:
        raise InputError(f"term {name!r}: the {kernel.name} kernel needs params"
                         f" {list(kernel.params)}")
    unknown = sorted(set(params) - set(kernel.params))
    missing = [p for p in kernel.params if p not in params]
    if unknown or missing:
        raise InputError(f"term {name!r}: the {kernel.name} kernel takes params"
                         f" {list(kernel.params)}; missing {missing}, unknown {unknown}")
    out = {}
    for p in kernel.params:
        v = np.asarray(params[p], np.float64)
        if not np.all(np.isfinite(v)):
            raise InputError(f"term {name!r}: parameter {p!r} is not finite: {v.tolist()}")
        if v.ndim == 1 and v.shape[0] != n_species or v.ndim == 2 and v.shape != (
                n_species, n_species) or v.ndim > 2:
            raise InputError(f"term {name!r}: parameter {p!r} has shape {v.shape}; give a"
                             f" scalar, a [{n_species}] vector (one per species) or a"
                             f" [{n_species}, {n_species}] species-pair table")
        if v.ndim == 2 and not np.allclose(v, v.T):
            raise InputError(f"term {name!r}: the species-pair table {p!r} must be symmetric")
        out[p] = v
    return out


def _probe_kernel(term: PairPotentialTerm, params) -> None:
    """A kernel declared finite at r = 0 (overlaps allowed) must be, for every species pair."""
    if not term.kernel.finite_at_zero:
        return
    import jax.numpy as jnp

    a, b = np.triu_indices(term.n_species)
    pp = term.pair_params(params, jnp.asarray(a), jnp.asarray(b))
    value = np.asarray(term.kernel.fn(jnp.zeros(a.shape), **pp))
    bad = np.flatnonzero(~np.isfinite(value))
    if bad.size:
        raise InputError(
            f"term {term.name!r}: the {term.kernel.name} kernel gives {value[bad[0]]} at r = 0"
            f" for species {int(a[bad[0]])}-{int(b[bad[0]])} but is declared finite_at_zero;"
            " declare finite_at_zero=False (overlapping particles are then refused) or make"
            " it finite at r = 0")


def pair_term(n: int, species, kernel, *, n_species: int | None = None, cutoff=None,
              shift: bool = False, box=None, dim: int = 3, mixing=None, exclusions=None,
              name: str = PAIRS) -> PairPotentialTerm:
    """A PairPotentialTerm over ``n`` particles (validated; see ``particle_system``)."""
    kernel = resolve_kernel(kernel)
    species = np.asarray(species)
    if species.shape != (n,) or not np.issubdtype(species.dtype, np.integer):
        raise InputError(f"term {name!r}: species must be {n} integers, got shape"
                         f" {species.shape} of {species.dtype}")
    n_species = int(species.max(initial=-1) + 1) if n_species is None else int(n_species)
    bad = np.flatnonzero((species < 0) | (species >= n_species))
    if bad.size:
        raise InputError(f"term {name!r}: species index {int(species[bad[0]])} of particle"
                         f" {int(bad[0])} is out of range 0..{n_species - 1}")
    mixing = dict(mixing or {})
    for p, rule in mixing.items():
        if p not in kernel.params or rule not in MIXING_RULES:
            raise InputError(f"term {name!r}: mixing rule {p}={rule!r}: parameters are"
                             f" {list(kernel.params)}, rules {list(MIXING_RULES)}")
    if cutoff is not None and not (np.isfinite(cutoff) and cutoff > 0):
        raise InputError(f"term {name!r}: cutoff must be a positive number, got {cutoff}")
    periodic = box is not None
    neighbors = None
    ex = () if exclusions is None else tuple(
        map(tuple, np.asarray(exclusions, np.int64).reshape(-1, 2).tolist()))
    if uses_in_trace_list(n, periodic, dim, cutoff):
        pairs = np.zeros((0, 2), np.int32)
        neighbors = in_trace_spec(n, float(cutoff), box)
    elif n > MAX_EXPLICIT_PAIR_PARTICLES:
        raise InputError(f"term {name!r}: {n} particles need a neighbor list, which needs a"
                         " 3D periodic box and a cutoff; give both, or use fewer particles")
    else:
        pairs = explicit_particle_pairs(n, exclusions)
    return PairPotentialTerm(name, species.astype(np.int32), pairs, kernel, n_species,
                             None if cutoff is None else float(cutoff), bool(shift), periodic,
                             int(dim), tuple(sorted(mixing.items())), neighbors, ex)


def particle_system(positions, species=None, *, box=None, masses=1.0, kernel="soft_sphere",
                    params=None, cutoff=None, shift: bool = False, mixing=None, bonds=None,
                    bond_params=None, bond_form: str = "harmonic",
                    exclude_bonded: bool = True) -> System:
    """A System of particles interacting through a pair kernel (and optional springs).

    Args:
        positions: [N, 2] or [N, 3]; sets N and the dimension (validated, not stored).
        species: [N] ints from 0 (default: all 0).
        box: [d, d] reduced box vectors (periodic), or None.
        masses: scalar or [N], > 0.
        kernel: a name of ``potentials.kernels.PAIR_KERNELS`` or a ``PairKernel``.
        params: {kernel parameter: scalar | [S] | [S, S]}.
        cutoff: pair cutoff (None: all pairs); ``shift`` makes the energy 0 at the cutoff.
        mixing: {parameter: "arithmetic" | "geometric"} for [S] vectors.
        bonds: [B, 2] particle pairs joined by springs; ``bond_params`` {"length", "k"}
            (harmonic) or {"length", "depth", "alpha"} (``bond_form="morse"``), [B] each.
        exclude_bonded: bonded pairs do not also interact through the pair kernel.
    """
    x = np.asarray(positions, np.float64)
    if x.ndim != 2 or x.shape[1] not in (2, 3):
        raise InputError(f"positions must have shape (N, 2) or (N, 3), got {x.shape}")
    n, dim = x.shape
    check_positions(x, dim=dim, allow_overlap=True)  # finite; overlaps: check_inputs below
    species = np.zeros(n, np.int32) if species is None else np.asarray(species)
    if box is not None:
        box = check_reduced_box(box, dim=dim)
    m = np.broadcast_to(np.asarray(masses, np.float64), (n,)).copy()
    if not np.all(np.isfinite(m) & (m > 0)):
        raise InputError(f"masses must be finite and > 0; particle {int(np.argmin(m))} has"
                         f" {float(np.min(m))}")
    terms, all_params = [], {}
    if bonds is not None:
        bonds = np.asarray(bonds)
        if bonds.ndim != 2 or bonds.shape[1] != 2 or not np.issubdtype(bonds.dtype, np.integer):
            raise InputError(f"bonds must be [B, 2] particle indices, got {bonds.shape}")
        bad = np.flatnonzero(np.any((bonds < 0) | (bonds >= n), axis=1))
        if bad.size:
            raise InputError(f"bond {int(bad[0])} {bonds[bad[0]].tolist()} names a particle"
                             f" out of range 0..{n - 1}")
        if bond_form not in BOND_FORMS:
            raise InputError(f"bond_form must be one of {list(BOND_FORMS)}, got {bond_form!r}")
        cls, names = BOND_FORMS[bond_form]
        bp = dict(bond_params or {})
        if sorted(bp) != sorted(names):
            raise InputError(f"{bond_form} bonds need bond_params {list(names)}, got {sorted(bp)}")
        all_params[BONDS] = {k: np.broadcast_to(np.asarray(bp[k], np.float64),
                                                (len(bonds),)).copy() for k in names}
        terms.append(cls(BONDS, bonds.astype(np.int32), periodic=box is not None))
    # the number of species is set by the parameter tables when they are per species
    sizes = [np.shape(v)[0] for v in (params or {}).values() if np.ndim(v) >= 1]
    term = pair_term(n, species, kernel, n_species=sizes[0] if sizes else None, cutoff=cutoff,
                     shift=shift, box=box, dim=dim, mixing=mixing,
                     exclusions=bonds if exclude_bonded else None)
    all_params[PAIRS] = _species_params(term.kernel, params, term.n_species, PAIRS)
    _probe_kernel(term, all_params[PAIRS])
    terms.insert(0, term)
    system = System(masses=m, terms=tuple(terms), params=all_params, box=box)
    system.check_inputs(x)
    return system
