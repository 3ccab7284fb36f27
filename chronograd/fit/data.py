"""QM reference data: reading and checking a dataset (manifest.json + arrays .npz).

Format ``chronograd-qm/1`` (see data/qm/make_qm_data.py and docs/qm_data.md): a JSON manifest
with method, basis, programs, ``units`` and ``records``; an NPZ with ``<record id>/positions``
[n, N, 3], ``/energy`` [n], ``/gradient`` [n, N, 3] (or ``/forces``; neither: an energy-only
record) and optionally ``/atomic_numbers`` [N]. Every record
has a mapped SMILES (atom order = map number - 1) and a per-geometry train/test ``split``.
Values are converted to chronograd units (nm, kJ/mol) when read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chronograd.errors import InputError
from chronograd.topology import Molecule


@dataclass
class QMRecord:
    """One molecule's geometries with QM energies (kJ/mol) and forces (kJ/mol/nm). An
    energy-only record (a torsion scan without gradients) has ``has_forces`` False and zero
    forces, which force terms skip."""

    id: str
    kind: str  # "torsion_scan" | "conformers" | other
    molecule: Molecule
    positions: np.ndarray  # [n, N, 3] nm
    energy: np.ndarray  # [n] kJ/mol
    forces: np.ndarray  # [n, N, 3] kJ/mol/nm
    split: np.ndarray  # [n] str
    dihedral: tuple | None = None
    angles_deg: np.ndarray | None = None
    has_forces: bool = True

    def subset(self, split: str | None) -> QMRecord:
        """The geometries of one split ("train" / "test"), or all for None."""
        if split is None:
            return self
        keep = self.split == split
        return QMRecord(self.id, self.kind, self.molecule, self.positions[keep],
                        self.energy[keep], self.forces[keep], self.split[keep], self.dihedral,
                        None if self.angles_deg is None else self.angles_deg[keep],
                        self.has_forces)


_SPELLINGS = {
    "angstrom": "'angstrom', 'bohr' or 'nm'",
    "hartree": "'hartree', 'kcal/mol', 'kJ/mol' or 'eV'",
    "hartree/bohr": "'hartree/bohr', 'kcal/mol/angstrom', 'kJ/mol/nm' or 'eV/angstrom'",
}


def _unit_factor(units: dict, key: str, where: str, example: str) -> float:
    """Factor to internal units of ``units[key]``, which must have the dimension of
    ``example`` (e.g. "angstrom", "hartree", "hartree/bohr")."""
    from chronograd.units import dimension_name, parse_unit

    if key not in units:
        raise InputError(f"{where}: 'units' has no entry for {key!r}; add e.g."
                         f" \"{key}\": \"{example}\"")
    expected = parse_unit(example)[1]
    try:
        factor, dims = parse_unit(str(units[key]))
    except InputError as e:
        raise InputError(f"{where}: cannot read the units {units[key]!r} of {key!r} ({e});"
                         f" use e.g. {_SPELLINGS.get(example, repr(example))}") from None
    if dims != expected:
        raise InputError(f"{where}: 'units' of {key!r} are {units[key]!r}"
                         f" ({dimension_name(dims)}); expected {dimension_name(expected)},"
                         f" e.g. {_SPELLINGS.get(example, repr(example))}")
    return factor


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


def _read_manifest(path) -> tuple[Path, dict]:
    """(manifest path, its JSON) after checking the structure every reader relies on."""
    path = Path(path)
    manifest = path / "manifest.json" if path.is_dir() else path
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such QM dataset manifest")
    try:
        meta = json.loads(manifest.read_text())
    except UnicodeDecodeError:
        raise InputError(f"{manifest}: not a text file (expected a JSON manifest)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{manifest}, line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{manifest}: expected a JSON object with 'units' and 'records'")
    records = meta.get("records", [])
    if not isinstance(records, list):
        raise InputError(f"{manifest}: 'records' must be a list of objects")
    seen = set()
    for k, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str):
            raise InputError(f"{manifest}: records[{k}] must be an object with a string 'id'")
        if r["id"] in seen:
            raise InputError(f"{manifest}: record id {r['id']!r} is used twice")
        seen.add(r["id"])
        for key in ("kind", "mapped_smiles", "name"):
            if key in r and not isinstance(r[key], str):
                raise InputError(f"{manifest} record {r['id']!r}: {key!r} must be a string")
    return manifest, meta


def _numeric(arrays: dict, key: str, where: Path, record: str) -> np.ndarray:
    a = arrays[key]
    if a.dtype.kind not in "fiu":
        raise InputError(f"{where}: array {key!r} of record {record!r} has dtype {a.dtype};"
                         " expected numbers")
    return np.asarray(a, float)


def _record_geometry_fields(r: dict, where: str, n_geometries: int, n_atoms: int):
    """(split, dihedral, angles) of a manifest record, checked against its arrays."""
    split = r.get("split", ["train"] * n_geometries)
    if (not isinstance(split, list) or len(split) != n_geometries
            or not all(s in ("train", "test") for s in split)):
        raise InputError(f"{where}: 'split' must list \"train\" or \"test\" for each of the"
                         f" {n_geometries} geometries")
    dihedral = r.get("dihedral")
    if dihedral is not None:
        if (not isinstance(dihedral, list) or len(dihedral) != 4
                or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a < n_atoms
                           for a in dihedral) or len(set(dihedral)) != 4):
            raise InputError(f"{where}: 'dihedral' must be 4 distinct atom indices in"
                             f" 0..{n_atoms - 1}, got {dihedral!r}")
        dihedral = tuple(dihedral)
    angles = r.get("angles_deg")
    if angles is not None:
        if (not isinstance(angles, list) or len(angles) != n_geometries
                or not all(isinstance(a, int | float) and not isinstance(a, bool)
                           and np.isfinite(a) for a in angles)):
            raise InputError(f"{where}: 'angles_deg' must be {n_geometries} finite numbers")
        angles = np.asarray(angles, float)
    return np.asarray(split), dihedral, angles


def load_qm_dataset(path, *, records: list[str] | None = None) -> list[QMRecord]:
    """Read a QM dataset directory (or its manifest.json); ``records`` picks ids (default all).

    Raises InputError naming the file and record for missing units, arrays whose shapes,
    dtypes or atomic numbers disagree with the mapped SMILES, non-finite values, malformed
    manifest entries and unknown ids. Arrays are read without unpickling.
    """
    from chronograd.interop.archive import read_arrays

    manifest, meta = _read_manifest(path)
    units = meta.get("units")
    if not isinstance(units, dict):
        raise InputError(f"{manifest}: no 'units' table; the dataset must say the units of"
                         " positions, energy and gradient (or forces)")
    name = meta.get("arrays", "qm_data.npz")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError(f"{manifest}: 'arrays' must be a file name next to the manifest,"
                         f" got {name!r}")
    arrays_path = manifest.with_name(name)
    if not arrays_path.is_file():
        raise InputError(f"{manifest}: its arrays file {arrays_path.name} is missing")
    arrays = read_arrays(arrays_path, "QM arrays file")
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
        try:
            mol = Molecule.from_mapped_smiles(r["mapped_smiles"], name=r.get("name", rid))
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        try:
            pos = _numeric(arrays, f"{rid}/positions", arrays_path, rid)
            energy = _numeric(arrays, f"{rid}/energy", arrays_path, rid)
        except KeyError as e:
            raise InputError(f"{arrays_path}: no array {e.args[0]} for record {rid!r}") from None
        has_forces = True
        if f"{rid}/gradient" in arrays:
            g_unit = _unit_factor(units, "gradient", str(manifest), "hartree/bohr")
            forces = -_numeric(arrays, f"{rid}/gradient", arrays_path, rid) * g_unit
        elif f"{rid}/forces" in arrays:
            g_unit = _unit_factor(units, "forces", str(manifest), "hartree/bohr")
            forces = _numeric(arrays, f"{rid}/forces", arrays_path, rid) * g_unit
        else:  # energy-only (e.g. a torsion scan without gradients): force terms skip it
            has_forces = False
            forces = np.zeros_like(pos)
        n_atoms = mol.n_atoms
        if pos.ndim != 3 or pos.shape[1:] != (n_atoms, 3) or pos.shape[0] == 0:
            raise InputError(f"{where}: positions have shape {pos.shape}, but the mapped SMILES"
                             f" has {n_atoms} atoms (expected [n >= 1, {n_atoms}, 3])")
        if forces.shape != pos.shape or energy.shape != pos.shape[:1]:
            raise InputError(f"{where}: {pos.shape[0]} geometries but energy shape"
                             f" {energy.shape} and gradient shape {forces.shape}")
        if f"{rid}/atomic_numbers" in arrays:
            z = arrays[f"{rid}/atomic_numbers"]
            if (z.dtype.kind not in "iu" or z.shape != (n_atoms,)
                    or np.any(z != mol.atomic_numbers)):
                same = z.shape == (n_atoms,) and z.dtype.kind in "iu"
                k = int(np.argmax(z != mol.atomic_numbers)) if same else 0
                raise InputError(f"{where}: atomic numbers {z.tolist()!s:.200} do not match the"
                                 f" mapped SMILES ({mol.atomic_numbers.tolist()}), first at"
                                 f" atom {k}")
        for label, a in (("positions", pos), ("energy", energy), ("gradient", forces)):
            if not np.all(np.isfinite(a)):
                k = int(np.argwhere(~np.isfinite(a.reshape(len(a), -1)))[0][0])
                raise InputError(f"{where}: {label} of geometry {k} is not finite")
        pos = pos * x_unit
        _check_geometry(rid, mol, pos, str(manifest))
        mol.positions = pos[0].copy()  # the conformer charge models (AM1-BCC) start from
        split, dihedral, angles = _record_geometry_fields(r, where, len(pos), n_atoms)
        out.append(QMRecord(rid, r.get("kind", "conformers"), mol, pos, energy * e_unit, forces,
                            split, dihedral, angles, has_forces))
    return out


def list_records(path) -> dict[str, str]:
    """{record id: kind} of a QM dataset, in file order."""
    _, meta = _read_manifest(path)
    return {r["id"]: r.get("kind", "conformers") for r in meta.get("records", [])}
