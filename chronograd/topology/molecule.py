"""Molecules over RDKit: construction, validation and graph enumeration (setup layer).

A Molecule is an RDKit molecule with explicit hydrogens, optional partial charges (e) and an
optional conformer (nm). Graph enumerations (bonds, angles, proper and improper torsions, 1-4
pairs) are NumPy index arrays, computed once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chronograd.errors import InputError


def _rdkit():
    from rdkit import Chem

    return Chem


def rdkit_parse(what: str, func):
    """Run an RDKit parse; if it fails, raise InputError with RDKit's own complaint."""
    import contextlib
    from io import StringIO

    from rdkit import rdBase

    stream = StringIO()
    rdBase.LogToPythonStderr()  # route RDKit's log through sys.stderr so it can be captured
    with contextlib.redirect_stderr(stream):
        result = func()
    if result is None:
        detail = " ".join(line.split("]", 1)[-1].strip() for line in
                          stream.getvalue().splitlines() if line.strip())
        raise InputError(f"RDKit rejected {what}" + (f": {detail}" if detail else ""))
    return result


def _check_atoms(mol, label: str) -> None:
    """Refuse molecules without atoms and radicals (as the OpenFF toolkit refuses them)."""
    if mol.GetNumAtoms() == 0:
        raise InputError(f"molecule {label!r} has no atoms")
    radicals = [a for a in mol.GetAtoms() if a.GetNumRadicalElectrons()]
    if radicals:
        a = radicals[0]
        raise InputError(f"molecule {label!r}: atom index {a.GetIdx()} ({a.GetSymbol()}) has"
                         f" {a.GetNumRadicalElectrons()} unpaired electron(s); radicals are not"
                         " supported (add the missing hydrogens or charges)")


@dataclass(eq=False)
class Molecule:
    """RDKit graph with explicit H, optional charges [N] (e) and positions [N, 3] (nm)."""

    rdmol: object
    name: str = ""
    partial_charges: np.ndarray | None = None
    positions: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_smiles(cls, smiles: str, *, name: str = "", conformer: bool = True,
                    seed: int = 0xF00D) -> Molecule:
        """Parse SMILES (stereo kept), add explicit hydrogens, optionally embed a conformer."""
        Chem = _rdkit()
        if not isinstance(smiles, str) or not smiles.strip():
            raise InputError(f"empty SMILES {smiles!r}; give a molecule, e.g. 'CCO'")
        mol = rdkit_parse(f"the SMILES {smiles!r}", lambda: Chem.MolFromSmiles(smiles))
        _check_atoms(mol, smiles)
        mol = Chem.AddHs(mol)
        positions = None
        if conformer:
            from rdkit.Chem import AllChem

            params = AllChem.ETKDGv3()
            params.randomSeed = seed
            if AllChem.EmbedMolecule(mol, params) != 0:
                raise InputError(f"RDKit could not generate a conformer for {smiles!r}")
            positions = mol.GetConformer().GetPositions() * 0.1
        return cls(mol, name or smiles, None, positions)

    @classmethod
    def from_rdkit(cls, mol, *, name: str = "") -> Molecule:
        """Wrap an RDKit molecule (hydrogens must be explicit); charges from the atoms'
        ``PartialCharge`` properties when every atom has one; positions from conformer 0."""
        Chem = _rdkit()
        mol = Chem.Mol(mol)
        label = name or (mol.GetProp("_Name") if mol.HasProp("_Name") else "") or \
            Chem.MolToSmiles(mol)
        _check_atoms(mol, label)
        implicit = [a.GetIdx() for a in mol.GetAtoms() if a.GetTotalNumHs(includeNeighbors=False)]
        if implicit:
            raise InputError(
                f"molecule {name or Chem.MolToSmiles(mol)!r}: atom index {implicit[0]} has"
                " implicit hydrogens; add them explicitly (Chem.AddHs, or an SDF with all H)"
            )
        charges = None
        if mol.GetNumAtoms() and all(a.HasProp("PartialCharge") for a in mol.GetAtoms()):
            charges = np.array([a.GetDoubleProp("PartialCharge") for a in mol.GetAtoms()])
        positions = mol.GetConformer().GetPositions() * 0.1 if mol.GetNumConformers() else None
        if positions is not None:  # coincident atoms are checked where positions are used
            bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
            if bad.size:
                raise InputError(f"molecule {label!r}: coordinates of atom index {int(bad[0])}"
                                 " are not finite")
        if charges is not None and not np.all(np.isfinite(charges)):
            k = int(np.flatnonzero(~np.isfinite(charges))[0])
            raise InputError(f"molecule {label!r}: the partial charge of atom index {k} is not"
                             " finite")
        if not name and mol.HasProp("_Name"):
            name = mol.GetProp("_Name")
        return cls(mol, name, charges, positions)

    @classmethod
    def from_mapped_smiles(cls, smiles: str, *, name: str = "") -> Molecule:
        """Parse a SMILES in which every atom, hydrogens included, carries a map number
        1..N; atom index = map number - 1 (OpenFF's ``from_mapped_smiles`` convention)."""
        Chem = _rdkit()
        ps = Chem.SmilesParserParams()
        ps.removeHs = False
        mol = rdkit_parse(f"the mapped SMILES {smiles!r}", lambda: Chem.MolFromSmiles(smiles, ps))
        maps = [a.GetAtomMapNum() for a in mol.GetAtoms()]
        if sorted(maps) != list(range(1, len(maps) + 1)):
            raise InputError(f"mapped SMILES {smiles!r}: every atom (hydrogens explicit) needs a"
                             f" distinct map number 1..{len(maps)}; got {sorted(maps)}")
        order = [maps.index(k) for k in range(1, len(maps) + 1)]
        mol = Chem.RenumberAtoms(mol, order)
        for a in mol.GetAtoms():
            a.SetAtomMapNum(0)
        return cls.from_rdkit(mol, name=name or Chem.MolToSmiles(Chem.RemoveHs(mol)))

    def mapped_smiles(self) -> str:
        """SMILES with explicit hydrogens and map numbers = atom index + 1."""
        Chem = _rdkit()
        mol = Chem.Mol(self.rdmol)
        mol.RemoveAllConformers()
        for a in mol.GetAtoms():
            a.SetAtomMapNum(a.GetIdx() + 1)
        return Chem.MolToSmiles(mol, allHsExplicit=True)

    @classmethod
    def from_sdf(cls, path) -> list[Molecule]:
        """All molecules of an SDF/MOL file. Partial charges are read from the
        ``atom.dprop.PartialCharge`` property (the RDKit/OpenFF convention)."""
        Chem = _rdkit()
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty; expected an SDF/MOL molecule")
        try:
            supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)
        except OSError as exc:
            raise InputError(f"{path}: RDKit cannot read this file ({exc})") from None
        out = []
        for k in range(len(supplier)):
            try:
                mol = rdkit_parse(f"record {k + 1}", lambda k=k: supplier[k])
            except InputError as exc:
                raise InputError(f"{path}: {exc} (check the counts, atom and bond lines)"
                                 ) from None
            try:
                out.append(cls.from_rdkit(mol))
            except InputError as exc:
                raise InputError(f"{path}: record {k + 1}: {exc}") from None
        if not out:
            raise InputError(f"{path}: no molecules found")
        return out

    # ---- graph -----------------------------------------------------------------------------

    @property
    def n_atoms(self) -> int:
        return self.rdmol.GetNumAtoms()

    @property
    def atomic_numbers(self) -> np.ndarray:
        return np.array([a.GetAtomicNum() for a in self.rdmol.GetAtoms()], np.int32)

    @property
    def masses(self) -> np.ndarray:
        return np.array([a.GetMass() for a in self.rdmol.GetAtoms()])

    @property
    def total_charge(self) -> int:
        return sum(a.GetFormalCharge() for a in self.rdmol.GetAtoms())

    def identity(self) -> str:
        """Canonical isomeric SMILES with explicit H: equal for copies of one molecule."""
        if "identity" not in self._cache:
            Chem = _rdkit()
            self._cache["identity"] = Chem.MolToSmiles(self.rdmol, isomericSmiles=True,
                                                       allHsExplicit=True)
        return self._cache["identity"]

    def bonds(self) -> np.ndarray:
        """[B, 2] bonded atom pairs (i < j)."""
        b = [sorted((x.GetBeginAtomIdx(), x.GetEndAtomIdx())) for x in self.rdmol.GetBonds()]
        return np.array(sorted(b), np.int32).reshape(-1, 2)

    def neighbors(self) -> list[list[int]]:
        return [[n.GetIdx() for n in a.GetNeighbors()] for a in self.rdmol.GetAtoms()]

    def angles(self) -> np.ndarray:
        """[A, 3] angles i-j-k with i < k."""
        out = []
        for j, nb in enumerate(self.neighbors()):
            for i, k in itertools.combinations(sorted(nb), 2):
                out.append((i, j, k))
        return np.array(out, np.int32).reshape(-1, 3)

    def propers(self) -> np.ndarray:
        """[T, 4] proper torsions i-j-k-l (each once, i < l)."""
        nb = self.neighbors()
        out = set()
        for j, k in self.bonds():
            for i in nb[j]:
                for l in nb[k]:
                    if i != k and l != j and i != l:
                        out.add((i, j, k, l) if i < l else (l, k, j, i))
        return np.array(sorted(out), np.int32).reshape(-1, 4)

    def pairs_14(self) -> np.ndarray:
        """[P, 2] atom pairs separated by exactly three bonds (i < j)."""
        distance = self.graph_distances()
        i, j = np.nonzero(np.triu(distance == 3))
        return np.stack([i, j], axis=1).astype(np.int32)

    def graph_distances(self) -> np.ndarray:
        """[N, N] number of bonds between atoms (molecules are small; large systems are many
        copies of small molecules)."""
        if "dist" not in self._cache:
            Chem = _rdkit()
            self._cache["dist"] = np.asarray(Chem.GetDistanceMatrix(self.rdmol), dtype=np.int64)
        return self._cache["dist"]
