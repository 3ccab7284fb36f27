"""Valence terms of one molecule from its SMIRNOFF labels (setup layer): constraints, bonds,
angles, proper torsions and impropers (the trefoil), each entry with its flat-theta rows.

Conventions follow the SMIRNOFF spec as the OpenFF toolkit and Interchange apply it:
constrained bonds have no harmonic term (a fully constrained triangle, e.g. TIP3P, has no
angle term), impropers are the three cyclic permutations of the outer atoms around the centre
with k / idivf (``auto`` = 3 for impropers, 1 for propers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chronograd.errors import InputError
from chronograd.forcefield.labeling import canonical_key


@dataclass(kw_only=True)
class Torsions:
    """atoms [T, 4]; periodicity [T]; rows {"k", "phase"} [T] flat theta rows; factor [T]
    (1 / idivf)."""

    atoms: np.ndarray
    periodicity: np.ndarray
    rows: dict
    factor: np.ndarray


@dataclass(kw_only=True)
class Valence:
    """One molecule's valence entries (local atom indices) with their theta rows."""

    bonds: np.ndarray  # [B, 2]
    bond_rows: dict  # {"length", "k"}: [B]
    angles: np.ndarray  # [A, 3]
    angle_rows: dict  # {"angle", "k"}: [A]
    propers: Torsions
    impropers: Torsions
    constraints: np.ndarray  # [C, 2]
    constraint_distances: np.ndarray  # [C] nm


def describe(mol, atoms) -> str:
    """'atoms (i, j) (C-H) of name', for error messages."""
    sym = [mol.rdmol.GetAtomWithIdx(int(a)).GetSymbol() for a in atoms]
    return f"atoms {tuple(int(a) for a in atoms)} ({'-'.join(sym)}) of {mol.name or 'molecule'}"


def lookup(labels, mol, handler, key, what):
    """The parameter index that labels ``key``, or an InputError naming the atoms."""
    pidx = labels.get(handler, {}).get(key)
    if pidx is None:
        raise InputError(f"no {handler} parameter matches {describe(mol, key)};"
                         f" the force field cannot type this {what}")
    return pidx


def _constraints(rows, mol, labels):
    handlers = rows.ff.file.handlers
    cons, cons_d = [], []
    for key, pidx in sorted(labels.get("Constraints", {}).items()):
        p = handlers["Constraints"].parameters[pidx]
        if "distance" in p.values:
            d = p.values["distance"]
        else:
            bidx = labels.get("Bonds", {}).get(key)
            if bidx is None:
                raise InputError(f"constraint {p.id} on {describe(mol, key)} has no distance"
                                 " and no Bonds parameter to take it from")
            d = handlers["Bonds"].parameters[bidx].values["length"]
        cons.append(key)
        cons_d.append(d)
    return np.array(cons, np.int32).reshape(-1, 2), np.array(cons_d)


def _torsions(rows, handler, keys_and_params, permute) -> Torsions:
    if not keys_and_params:
        return Torsions(atoms=np.zeros((0, 4), np.int32), periodicity=np.zeros(0, np.int32),
                        rows={"k": np.zeros(0, int), "phase": np.zeros(0, int)},
                        factor=np.zeros(0))
    ff = rows.ff
    atoms, per, k_rows, ph_rows, factor = [], [], [], [], []
    info = ff.row_info[handler]["k"]
    default = ff.file.handlers[handler].attributes.get("default_idivf", "auto")
    for key, pidx in keys_and_params:
        for pos in rows.positions_in_leaf[(handler, "k")][pidx]:
            idivf = info.idivf[pos]
            if idivf is None:
                idivf = (3.0 if handler == "ImproperTorsions" else 1.0) if default == \
                    "auto" else float(default)
            for t in permute(key):
                atoms.append(t)
                per.append(info.periodicity[pos])
                k_rows.append(rows.offsets[(handler, "k")] + pos)
                ph_rows.append(rows.offsets[(handler, "phase")] + pos)
                factor.append(1.0 / idivf)
    return Torsions(atoms=np.array(atoms, np.int32).reshape(-1, 4),
                    periodicity=np.array(per, np.int32),
                    rows={"k": np.array(k_rows), "phase": np.array(ph_rows)},
                    factor=np.array(factor))


def trefoil(key):
    """The three improper torsions (centre first) of a SMIRNOFF improper ``key`` (centre at
    position 1): cyclic permutations of the outer atoms."""
    outer = (key[0], key[2], key[3])
    return [(key[1], outer[a], outer[b], outer[c])
            for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1))]


def valence_terms(rows, mol, labels) -> Valence:
    """The valence entries of ``mol`` typed by ``labels`` (from ``label_molecule``)."""
    handlers = rows.ff.file.handlers
    constraints, distances = _constraints(rows, mol, labels)
    constrained = set(map(tuple, constraints.tolist()))

    bonds, b_len, b_k = [], [], []
    for key in map(tuple, mol.bonds() if "Bonds" in handlers else []):
        pidx = lookup(labels, mol, "Bonds", key, "bond")
        if key in constrained:
            continue
        bonds.append(key)
        b_len.append(rows.row("Bonds", "length", pidx))
        b_k.append(rows.row("Bonds", "k", pidx))
    angles, a_ang, a_k = [], [], []
    for key in map(tuple, mol.angles() if "Angles" in handlers else []):
        pidx = lookup(labels, mol, "Angles", canonical_key("Angles", key), "angle")
        i, j, k = key
        if ((i, k) in constrained and tuple(sorted((i, j))) in constrained
                and tuple(sorted((j, k))) in constrained):
            continue  # rigid triangle (e.g. TIP3P)
        angles.append(key)
        a_ang.append(rows.row("Angles", "angle", pidx))
        a_k.append(rows.row("Angles", "k", pidx))

    propers = [(tuple(t), lookup(labels, mol, "ProperTorsions", tuple(t), "proper torsion"))
               for t in (mol.propers() if "ProperTorsions" in handlers else [])]
    impropers = sorted(labels.get("ImproperTorsions", {}).items())
    return Valence(
        bonds=np.array(bonds, np.int32).reshape(-1, 2),
        bond_rows={"length": np.array(b_len), "k": np.array(b_k)},
        angles=np.array(angles, np.int32).reshape(-1, 3),
        angle_rows={"angle": np.array(a_ang), "k": np.array(a_k)},
        propers=_torsions(rows, "ProperTorsions", propers, lambda k: [k]),
        impropers=_torsions(rows, "ImproperTorsions", impropers, trefoil),
        constraints=constraints, constraint_distances=distances)
