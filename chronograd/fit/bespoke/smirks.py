"""Molecule-specific torsion SMIRKS and the force field that carries them.

Each torsion i-j-k-l around a bond j-k gets a SMIRKS whose central atoms spell out their
element, connectivity, hydrogen count, charge, aromaticity and, recursively, every
neighbor's element, connectivity and aromaticity; outer atoms spell element, connectivity,
charge and aromaticity. Symmetry-equivalent torsions get the same SMIRKS and share one
parameter. The parameters are appended to the base force field's ProperTorsions (SMIRNOFF:
the last match wins), with k1..k4 at phase 0 that reproduce the base parameter's energy, so
theta gains rows and nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chronograd.fit.bespoke.fragment import BespokeError, bond_label

_KCAL = 4.184


@dataclass
class BespokeTorsion:
    """One bespoke parameter: its SMIRKS and the torsions (fragment indices) it covers."""

    id: str
    smirks: str
    torsions: list[tuple[int, int, int, int]]


def _describe(atom, *, hydrogens: bool) -> str:
    parts = [f"#{atom.GetAtomicNum()}", f"X{atom.GetDegree()}"]
    if hydrogens:
        parts.append(f"H{sum(1 for n in atom.GetNeighbors() if n.GetAtomicNum() == 1)}")
    charge = atom.GetFormalCharge()
    parts.append(f"{'+' if charge >= 0 else '-'}{abs(charge)}")
    parts.append("a" if atom.GetIsAromatic() else "A")
    return "".join(parts)


def _central(atom) -> str:
    """The atom with its whole first shell as a recursive SMARTS."""
    shell = sorted(f"(~[{_describe(n, hydrogens=False)}])" for n in atom.GetNeighbors())
    return f"{_describe(atom, hydrogens=True)};$([#{atom.GetAtomicNum()}]{''.join(shell)})"


def bespoke_torsions(molecule, bond, *, prefix: str) -> list[BespokeTorsion]:
    """The bespoke torsion parameters of ``bond`` (j, k) in ``molecule``, ids
    ``{prefix}-1``, ``{prefix}-2``, ..."""
    from chronograd.forcefield.labeling import mdl_aromatic_copy

    rd = mdl_aromatic_copy(molecule.rdmol)
    j, k = bond
    aj, ak = rd.GetAtomWithIdx(j), rd.GetAtomWithIdx(k)
    cj, ck = _central(aj), _central(ak)
    groups: dict[str, list] = {}
    for ni in aj.GetNeighbors():
        for nl in ak.GetNeighbors():
            if ni.GetIdx() == k or nl.GetIdx() == j:
                continue
            smirks = (f"[{_describe(ni, hydrogens=False)}:1]~[{cj}:2]-;!@[{ck}:3]"
                      f"~[{_describe(nl, hydrogens=False)}:4]")
            groups.setdefault(smirks, []).append((ni.GetIdx(), j, k, nl.GetIdx()))
    return [BespokeTorsion(f"{prefix}-{n + 1}", s, t)
            for n, (s, t) in enumerate(sorted(groups.items()))]


def _terms(parameter) -> list[tuple[int, float]]:
    """(periodicity, k / idivf in kJ/mol) of a base parameter at phase 0 (phase 180 flips
    the sign of k)."""
    out = []
    n = 1
    while f"periodicity{n}" in parameter.values:
        per = int(parameter.values[f"periodicity{n}"])
        phase = float(parameter.values.get(f"phase{n}", 0.0))
        k = float(parameter.values[f"k{n}"]) / float(parameter.values.get(f"idivf{n}", 1.0))
        if abs(np.sin(phase)) > 1e-6:
            raise BespokeError(f"base torsion parameter {parameter.id} has phase{n} ="
                               f" {np.rad2deg(phase):.1f} deg; bespoke terms start from phases"
                               " 0 or 180 only")
        out.append((per, k * float(np.sign(np.cos(phase)))))
        n += 1
    return out


def write_bespoke_terms(base, molecule, torsions: list[BespokeTorsion], path) -> None:
    """A SMIRNOFF file with one ProperTorsions handler (the base's settings) holding the
    bespoke parameters, each starting from the energy of the base parameter that types its
    first torsion in ``molecule``: k1..k4 at phase 0, idivf 1."""
    from xml.sax.saxutils import quoteattr

    from chronograd.forcefield.labeling import canonical_key, label_molecule

    handler = base.file.handlers["ProperTorsions"]
    labels = label_molecule(base.file, molecule, handlers=("ProperTorsions",))
    assigned = labels.assignments["ProperTorsions"]
    attrs = " ".join(f"{k}={quoteattr(v)}" for k, v in handler.attributes.items())
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             f'<SMIRNOFF version="0.3" aromaticity_model="{base.file.aromaticity_model}">',
             f"  <ProperTorsions {attrs}>"]
    for t in torsions:
        index = assigned.get(canonical_key("ProperTorsions", t.torsions[0]))
        ks = dict.fromkeys(range(1, 5), 0.0)
        if index is not None:
            for per, k in _terms(handler.parameters[index]):
                if per not in ks:
                    raise BespokeError(f"base torsion parameter"
                                       f" {handler.parameters[index].id} has periodicity {per};"
                                       " bespoke terms use periodicities 1-4")
                ks[per] += k
        fields = [f"smirks={quoteattr(t.smirks)}", f'id="{t.id}"']
        for n in range(1, 5):
            fields += [f'periodicity{n}="{n}"', f'phase{n}="0.0 * degree ** 1"',
                       f'k{n}="{ks[n] / _KCAL!r} * mole ** -1 * kilocalorie ** 1"',
                       f'idivf{n}="1.0"']
        lines.append(f"    <Proper {' '.join(fields)}></Proper>")
    lines += ["  </ProperTorsions>", "</SMIRNOFF>"]
    Path(path).write_text("\n".join(lines) + "\n")


def check_coverage(ff, molecule, bond, ids: set[str], where: str) -> int:
    """Every torsion around ``bond`` of ``molecule`` is typed by a bespoke parameter (else a
    BespokeError: the SMIRKS did not transfer); returns how many other torsions they type."""
    from chronograd.forcefield.labeling import label_molecule

    handler = ff.file.handlers["ProperTorsions"]
    assigned = label_molecule(ff.file, molecule, handlers=("ProperTorsions",)
                              ).assignments["ProperTorsions"]
    j, k = bond
    elsewhere = 0
    for key, index in assigned.items():
        around = {key[1], key[2]} == {j, k}
        mine = handler.parameters[index].id in ids
        if around and not mine:
            raise BespokeError(f"bond {bond_label(molecule, bond)}: torsion {key} of the"
                               f" {where} is typed by {handler.parameters[index].id}, not by a"
                               " bespoke parameter; the generated SMIRKS did not transfer")
        elsewhere += mine and not around
    return elsewhere
