"""QM reference data: reading and checking a dataset (manifest.json + arrays .npz).

Format ``chronograd-qm/1`` (see data/qm/make_qm_data.py): a JSON manifest with method, basis,
programs, ``units`` and ``records``; an NPZ with ``<record id>/positions`` [n, N, 3],
``/energy`` [n], ``/gradient`` [n, N, 3] and optionally ``/atomic_numbers`` [N]. Every record
has a mapped SMILES (atom order = map number - 1) and a per-geometry train/test ``split``.
Values are converted to chronograd units (nm, kJ/mol) when read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chronograd.errors import InputError
from chronograd.forcefield.quantity import unit_factor
from chronograd.topology import Molecule

_UNIT_NAMES = {"angstrom": "angstrom", "nanometer": "nanometer", "nm": "nanometer",
               "bohr": "bohr", "hartree": "hartree", "kilojoule_per_mole": "kilojoule_per_mole",
               "kj/mol": "kilojoule_per_mole", "kilocalorie_per_mole": "kilocalorie_per_mole",
               "kcal/mol": "kilocalorie_per_mole"}
_TO_INTERNAL = {"angstrom": 0.1, "nanometer": 1.0, "bohr": 0.0529177210903,
                "hartree": 2625.4996394798254, "kilojoule_per_mole": 1.0,
                "kilocalorie_per_mole": 4.184}


@dataclass
class QMRecord:
    """One molecule's geometries with QM energies (kJ/mol) and forces (kJ/mol/nm)."""

    id: str
    kind: str  # "torsion_scan" | "conformers" | other
    molecule: Molecule
    positions: np.ndarray  # [n, N, 3] nm
    energy: np.ndarray  # [n] kJ/mol
    forces: np.ndarray  # [n, N, 3] kJ/mol/nm
    split: np.ndarray  # [n] str
    dihedral: tuple | None = None
    angles_deg: np.ndarray | None = None

    def subset(self, split: str | None) -> QMRecord:
        """The geometries of one split ("train" / "test"), or all for None."""
        if split is None:
            return self
        keep = self.split == split
        return QMRecord(self.id, self.kind, self.molecule, self.positions[keep],
                        self.energy[keep], self.forces[keep], self.split[keep], self.dihedral,
                        None if self.angles_deg is None else self.angles_deg[keep])


def _unit_factor(units: dict, key: str, where: str, dimension: str) -> float:
    if key not in units:
        raise InputError(f"{where}: 'units' has no entry for {key!r}; add e.g."
                         f" \"{key}\": \"{dimension}\"")
    text = str(units[key]).strip().lower().replace(" ", "")
    parts = text.split("/")
    try:
        if len(parts) == 1:
            return _TO_INTERNAL[_UNIT_NAMES[parts[0]]]
        if len(parts) == 2:
            return _TO_INTERNAL[_UNIT_NAMES[parts[0]]] / _TO_INTERNAL[_UNIT_NAMES[parts[1]]]
        if text in _UNIT_NAMES:
            return _TO_INTERNAL[_UNIT_NAMES[text]]
    except KeyError:
        pass
    try:
        return unit_factor(str(units[key]))
    except InputError:
        raise InputError(f"{where}: cannot read units {units[key]!r} for {key!r}; use e.g."
                         f" {dimension!r}") from None


def _check_geometry(record_id: str, mol: Molecule, positions: np.ndarray, where: str):
    """Bonded atoms must lie within 1.4x the sum of their covalent radii: catches positions
    whose atom order does not match the mapped SMILES."""
    from rdkit import Chem

    bonds = mol.bonds()
    if not len(bonds):
        return
    table = Chem.GetPeriodicTable()
    radius = 0.1 * np.array([table.GetRcovalent(int(z)) for z in mol.atomic_numbers])
    limit = 1.4 * (radius[bonds[:, 0]] + radius[bonds[:, 1]])
    d = np.linalg.norm(positions[:, bonds[:, 0]] - positions[:, bonds[:, 1]], axis=-1)
    bad = np.argwhere(d > limit)
    if len(bad):
        k, b = bad[0]
        i, j = bonds[b]
        raise InputError(
            f"{where}: record {record_id!r} geometry {k}: atoms {i} and {j} are bonded in the"
            f" mapped SMILES but {d[k, b]:.3f} nm apart; the atom order of the positions does"
            " not match the molecule (map number = atom index + 1)")


def load_qm_dataset(path, *, records: list[str] | None = None) -> list[QMRecord]:
    """Read a QM dataset directory (or its manifest.json); ``records`` picks ids (default all).

    Raises InputError naming the file and record for missing units, arrays whose shapes or
    atomic numbers disagree with the mapped SMILES, non-finite values and unknown ids.
    """
    path = Path(path)
    manifest = path / "manifest.json" if path.is_dir() else path
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such QM dataset manifest")
    try:
        meta = json.loads(manifest.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{manifest}, line {e.lineno}: not valid JSON ({e.msg})") from None
    if "units" not in meta:
        raise InputError(f"{manifest}: no 'units' table; the dataset must say the units of"
                         " positions, energy and gradient (or forces)")
    units = meta["units"]
    arrays_path = manifest.with_name(meta.get("arrays", "qm_data.npz"))
    if not arrays_path.is_file():
        raise InputError(f"{manifest}: its arrays file {arrays_path.name} is missing")
    arrays = np.load(arrays_path)
    known = {r["id"]: r for r in meta.get("records", [])}
    wanted = list(known) if records is None else list(records)
    missing = [r for r in wanted if r not in known]
    if missing:
        raise InputError(f"{manifest}: no record {missing[0]!r}; records are"
                         f" {', '.join(sorted(known))}")
    x_unit = _unit_factor(units, "positions", str(manifest), "angstrom")
    e_unit = _unit_factor(units, "energy", str(manifest), "hartree")
    out = []
    for rid in wanted:
        r = known[rid]
        where = f"{manifest} record {rid!r}"
        if "mapped_smiles" not in r:
            raise InputError(f"{where}: no 'mapped_smiles' (needed to fix the atom order)")
        mol = Molecule.from_mapped_smiles(r["mapped_smiles"], name=r.get("name", rid))
        try:
            pos = np.asarray(arrays[f"{rid}/positions"], float)
            energy = np.asarray(arrays[f"{rid}/energy"], float)
        except KeyError as e:
            raise InputError(f"{arrays_path}: no array {e.args[0]} for record {rid!r}") from None
        if f"{rid}/gradient" in arrays:
            g_unit = _unit_factor(units, "gradient", str(manifest), "hartree/bohr")
            forces = -np.asarray(arrays[f"{rid}/gradient"], float) * g_unit
        elif f"{rid}/forces" in arrays:
            g_unit = _unit_factor(units, "forces", str(manifest), "hartree/bohr")
            forces = np.asarray(arrays[f"{rid}/forces"], float) * g_unit
        else:
            raise InputError(f"{arrays_path}: record {rid!r} has neither gradient nor forces")
        n_atoms = mol.n_atoms
        if pos.ndim != 3 or pos.shape[1:] != (n_atoms, 3):
            raise InputError(f"{where}: positions have shape {pos.shape}, but the mapped SMILES"
                             f" has {n_atoms} atoms (expected [n, {n_atoms}, 3])")
        if forces.shape != pos.shape or energy.shape != pos.shape[:1]:
            raise InputError(f"{where}: {pos.shape[0]} geometries but energy shape"
                             f" {energy.shape} and gradient shape {forces.shape}")
        if f"{rid}/atomic_numbers" in arrays:
            z = np.asarray(arrays[f"{rid}/atomic_numbers"])
            if z.shape != (n_atoms,) or np.any(z != mol.atomic_numbers):
                k = int(np.argmax(z != mol.atomic_numbers)) if z.shape == (n_atoms,) else 0
                raise InputError(f"{where}: atomic numbers {z.tolist()} do not match the mapped"
                                 f" SMILES ({mol.atomic_numbers.tolist()}), first at atom {k}")
        for name, a in (("positions", pos), ("energy", energy), ("gradient", forces)):
            if not np.all(np.isfinite(a)):
                k = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0][0])
                raise InputError(f"{where}: {name} of geometry {k} is not finite")
        pos = pos * x_unit
        _check_geometry(rid, mol, pos, str(manifest))
        mol.positions = pos[0].copy()  # the conformer charge models (AM1-BCC) start from
        split = np.asarray(r.get("split", ["train"] * len(pos)))
        if split.shape != (len(pos),):
            raise InputError(f"{where}: 'split' has {split.size} entries for {len(pos)}"
                             " geometries")
        out.append(QMRecord(rid, r.get("kind", "conformers"), mol, pos, energy * e_unit, forces,
                            split, tuple(r["dihedral"]) if "dihedral" in r else None,
                            np.asarray(r["angles_deg"]) if "angles_deg" in r else None))
    return out


def list_records(path) -> dict[str, str]:
    """{record id: kind} of a QM dataset, in file order."""
    path = Path(path)
    manifest = path / "manifest.json" if path.is_dir() else path
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such QM dataset manifest")
    meta = json.loads(manifest.read_text())
    return {r["id"]: r.get("kind", "conformers") for r in meta.get("records", [])}
