"""SMIRKS matching with SMIRNOFF semantics (setup layer, RDKit).

For every handler, parameters are tried in file order and the last one that matches an atom
tuple wins. Atom tuples are deduplicated the way the SMIRNOFF spec (and the OpenFF toolkit)
does: valence terms are keyed with the first index below the last (reversed otherwise);
improper torsions keep the central (second) atom and sort the three others. Molecules are
prepared with the MDL aromaticity model (``OEAroModel_MDL``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chronograd.forcefield.offxml import ForceFieldFile
from chronograd.topology.molecule import Molecule

_MAX_MATCHES = int(np.iinfo(np.uintc).max)
# Handlers whose tagged atoms form one valence term, keyed as in the SMIRNOFF spec.
VALENCE_HANDLERS = ("Constraints", "Bonds", "Angles", "ProperTorsions")


def mdl_aromatic_copy(rdmol):
    """A copy of ``rdmol`` with aromaticity perceived by the MDL model."""
    from rdkit import Chem

    mol = Chem.Mol(rdmol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    Chem.SanitizeMol(
        mol, Chem.SANITIZE_ALL ^ Chem.SANITIZE_ADJUSTHS ^ Chem.SANITIZE_SETAROMATICITY
    )
    Chem.SetAromaticity(mol, Chem.AromaticityModel.AROMATICITY_MDL)
    return mol


_QUERY_CACHE: dict[str, tuple[object, list[int]]] = {}


def parse_smirks(smirks: str):
    """(RDKit query, query-atom indices of tags 1, 2, ... in order), cached per SMIRKS.

    Raises:
        InputError: RDKit cannot parse it (with RDKit's own complaint).
    """
    if smirks not in _QUERY_CACHE:
        from rdkit import Chem, rdBase

        with rdBase.BlockLogs():
            q = Chem.MolFromSmarts(smirks)
        if q is None:
            from chronograd.topology.molecule import rdkit_parse

            rdkit_parse(f"the SMIRKS {smirks!r}", lambda: Chem.MolFromSmarts(smirks))
        tagged = {a.GetAtomMapNum(): a.GetIdx() for a in q.GetAtoms() if a.GetAtomMapNum()}
        _QUERY_CACHE[smirks] = (q, [tagged[k] for k in sorted(tagged)])
    return _QUERY_CACHE[smirks]


def smirks_matches(aromatic_rdmol, smirks: str) -> list[tuple[int, ...]]:
    """All (non-unique) matches of the tagged atoms of ``smirks``, in tag order."""
    q, order = parse_smirks(smirks)
    full = aromatic_rdmol.GetSubstructMatches(
        q, uniquify=False, maxMatches=_MAX_MATCHES, useChirality=True
    )
    return [tuple(m[i] for i in order) for m in full]


def canonical_key(handler: str, atoms: tuple[int, ...]) -> tuple[int, ...]:
    if handler == "ImproperTorsions":
        others = sorted((atoms[0], atoms[2], atoms[3]))
        return (others[0], atoms[1], others[1], others[2])
    if len(atoms) > 1 and atoms[0] > atoms[-1]:
        return tuple(reversed(atoms))
    return tuple(atoms)


@dataclass
class Labels:
    """Per handler: atom tuple (canonical key) -> index of the winning parameter."""

    molecule: Molecule
    assignments: dict[str, dict[tuple[int, ...], int]]


def label_molecule(ff: ForceFieldFile, molecule: Molecule,
                   handlers=("Constraints", "Bonds", "Angles", "ProperTorsions",
                             "ImproperTorsions", "vdW", "LibraryCharges")) -> Labels:
    """Assign the parameters of ``handlers`` (those present in ``ff``) to ``molecule``."""
    rdmol = mdl_aromatic_copy(molecule.rdmol)
    out = {}
    for name in handlers:
        handler = ff.handlers.get(name)
        if handler is None:
            continue
        assigned: dict[tuple[int, ...], int] = {}
        for index, parameter in enumerate(handler.parameters):
            for match in smirks_matches(rdmol, parameter.smirks):
                assigned[canonical_key(name, match)] = index
        out[name] = assigned
    return Labels(molecule, out)


def charge_increment_matches(ff: ForceFieldFile, molecule: Molecule) -> list[tuple[tuple, int]]:
    """ChargeIncrementModel assignments as (atoms in tag order, parameter index): for each
    unordered set of atoms the last matching parameter wins, and so does the tag order of its
    last match (the SMIRNOFF/OpenFF semantics; the order says which atom gets which
    increment)."""
    handler = ff.handlers.get("ChargeIncrementModel")
    if handler is None:
        return []
    rdmol = mdl_aromatic_copy(molecule.rdmol)
    assigned: dict[tuple[int, ...], tuple[tuple[int, ...], int]] = {}
    for index, parameter in enumerate(handler.parameters):
        for match in smirks_matches(rdmol, parameter.smirks):
            assigned[tuple(sorted(match))] = (match, index)
    return list(assigned.values())


def virtual_site_matches(ff: ForceFieldFile, molecule: Molecule) -> list[tuple[int, tuple]]:
    """VirtualSites assignments as (parameter index, orientation atoms in tag order; the first
    is the parent), in OpenFF's order: parents in order of first match, then site names. Per
    parent and site name the last matching parameter wins; ``match="once"`` keeps its first
    orientation, ``"all_permutations"`` every one."""
    handler = ff.handlers.get("VirtualSites")
    if handler is None:
        return []
    rdmol = mdl_aromatic_copy(molecule.rdmol)
    by_parent: dict[int, dict[str, list[tuple[int, tuple]]]] = {}
    for index, parameter in enumerate(handler.parameters):
        seen = set()
        for match in smirks_matches(rdmol, parameter.smirks):
            if match in seen:
                continue
            seen.add(match)
            name = parameter.strings.get("name", "EP")
            by_parent.setdefault(match[0], {}).setdefault(name, []).append((index, match))
    out = []
    for per_name in by_parent.values():
        for matches in per_name.values():
            winner = matches[-1][0]
            orientations = [m for i, m in matches if i == winner]
            if handler.parameters[winner].strings["match"] == "once":
                orientations = orientations[:1]
            out.extend((winner, m) for m in orientations)
    return out
