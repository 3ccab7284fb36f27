"""QM data in: QCSchema results, TorsionDrive scans and plain XYZ files to ``chronograd-qm/1``.

    record = read_qcschema(["opt1.json", "opt2.json"])          # AtomicResult JSON files
    scan = read_torsiondrive("torsiondrive_state.json", mapped_smiles="[C:1]...")
    frames = read_xyz("scan.xyz", mapped_smiles=..., energy_unit="kcal/mol")
    write_qm_dataset([record, scan], "my_data/", method="b3lyp-d3bj", basis="dzvp")

Every reader returns a :class:`~chronograd.fit.data.QMRecord` in chronograd units (nm, kJ/mol,
kJ/mol/nm) whose atom order is that of a mapped SMILES (map number = atom index + 1): taken
from the file when it carries one (QCSchema ``extras`` or ``identifiers``
``canonical_isomeric_explicit_hydrogen_mapped_smiles``, OpenFF's convention) or passed in.
The elements in the file must match the SMILES atom by atom; a mismatch (another molecule, or
another atom order) is an error naming the file, record and atom. Records without gradients
are energy-only (force terms skip them). Units are parsed by ``chronograd.units`` (hartree,
kcal/mol, kJ/mol, eV; per bohr, angstrom, nm). Nothing is executed or unpickled.

Formats read (published schemas):
- QCSchema ``AtomicResult`` (``schema_name`` "qcschema_output"): ``molecule.symbols``,
  ``molecule.geometry`` (bohr), ``driver`` "energy" or "gradient", ``return_result``,
  ``properties.return_energy`` (hartree), ``success``.
- TorsionDrive: the ``torsiondrive`` package's state JSON (``dihedrals``, ``grid_spacing``,
  ``elements``, ``grid_status`` {"angle": [[start (bohr), end (bohr), energy (hartree)], ...]}),
  the lowest-energy optimization of each grid point taken; or a QCFractal TorsionDrive record
  exported with its final geometries (``keywords.dihedrals``, ``final_energy_dict`` or
  ``final_energies`` keyed "[angle]", ``final_molecules`` QCSchema molecules by the same keys).
- XYZ: frames of "count / comment / element x y z" lines; energies from a list, a file with
  one number per frame, or each comment line (the number after "energy", else the first).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from chronograd.errors import InputError
from chronograd.fit.data import QMRecord
from chronograd.topology import Molecule

MAPPED_SMILES_KEY = "canonical_isomeric_explicit_hydrogen_mapped_smiles"
_HARTREE_BOHR = "hartree/bohr"


def _unit(text: str, expected: str, where: str) -> float:
    from chronograd.units import dimension_name, parse_unit

    try:
        factor, dims = parse_unit(str(text))
    except InputError as e:
        raise InputError(f"{where}: cannot read the unit {text!r} ({e})") from None
    want = parse_unit(expected)[1]
    if dims != want:
        raise InputError(f"{where}: the unit {text!r} is {dimension_name(dims)}; expected"
                         f" {dimension_name(want)}, e.g. {expected!r}")
    return factor


def _json(path: Path) -> object:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (expected JSON)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None


def _molecule(mapped_smiles: str, name: str, where: str) -> Molecule:
    try:
        return Molecule.from_mapped_smiles(mapped_smiles, name=name)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _check_elements(mol: Molecule, symbols, where: str) -> None:
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    symbols = [str(s).capitalize() for s in symbols]
    mine = [table.GetElementSymbol(int(z)) for z in mol.atomic_numbers]
    if len(symbols) != len(mine):
        raise InputError(f"{where}: {len(symbols)} atoms in the file but {len(mine)} in the"
                         " mapped SMILES; it is another molecule")
    for k, (a, b) in enumerate(zip(symbols, mine, strict=True)):
        if a != b:
            raise InputError(f"{where}: atom {k} is {a} in the file but {b} in the mapped"
                             " SMILES (another molecule, or another atom order)")


def _finite(a, what: str, where: str) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{where}: {what} is not finite")
    return a


def _mapped_smiles_of(molecule: dict) -> str | None:
    for key in ("extras", "identifiers"):
        d = molecule.get(key) or {}
        if isinstance(d, dict) and isinstance(d.get(MAPPED_SMILES_KEY), str):
            return d[MAPPED_SMILES_KEY]
    return None


def _geometry(molecule: dict, n: int, where: str) -> np.ndarray:
    from chronograd.units import BOHR

    g = molecule.get("geometry")
    try:
        g = np.asarray(g, np.float64).reshape(n, 3)
    except (TypeError, ValueError):
        raise InputError(f"{where}: molecule.geometry must hold {3 * n} numbers (bohr)") from None
    return _finite(g, "the geometry", where) * BOHR


def read_qcschema(paths, *, mapped_smiles: str | None = None, record_id: str | None = None,
                  kind: str = "conformers") -> QMRecord:
    """One record from QCSchema AtomicResult JSON files (each holds one result or a list),
    all of the same molecule in the same atom order."""
    from chronograd.units import HARTREE

    paths = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    if not paths:
        raise InputError("read_qcschema: no files given")
    results = []
    for p in paths:
        doc = _json(p)
        items = doc if isinstance(doc, list) else [doc]
        for k, item in enumerate(items):
            results.append((f"{p}" + (f" [{k}]" if isinstance(doc, list) else ""), item))
    mol, smiles, pos, energy, grads = None, mapped_smiles, [], [], []
    for where, r in results:
        if not isinstance(r, dict) or r.get("schema_name") not in ("qcschema_output",
                                                                   "qc_schema_output"):
            raise InputError(f"{where}: not a QCSchema AtomicResult (schema_name"
                             " \"qcschema_output\")")
        if r.get("success") is False:
            err = (r.get("error") or {}).get("error_message", "no message")
            raise InputError(f"{where}: the QM calculation failed ({str(err)[:120]}); drop"
                             " this result or rerun it")
        m = r.get("molecule")
        if not isinstance(m, dict) or not isinstance(m.get("symbols"), list):
            raise InputError(f"{where}: no molecule.symbols")
        found = _mapped_smiles_of(m)
        if smiles is None:
            smiles = found
        if smiles is None:
            raise InputError(f"{where}: no mapped SMILES in molecule.extras or identifiers"
                             f" ({MAPPED_SMILES_KEY}); pass one (--smiles) to fix the atom order")
        if found is not None and mapped_smiles is None and found != smiles:
            raise InputError(f"{where}: a different molecule ({found}) from the first result"
                             f" ({smiles}); one record holds one molecule")
        if mol is None:
            mol = _molecule(smiles, record_id or Path(paths[0]).stem, where)
        _check_elements(mol, m["symbols"], where)
        pos.append(_geometry(m, mol.n_atoms, where))
        driver = r.get("driver")
        props = r.get("properties") or {}
        if driver == "gradient":
            g = np.asarray(r.get("return_result"), np.float64)
            if g.size != 3 * mol.n_atoms:
                raise InputError(f"{where}: return_result must be the gradient ({3 * mol.n_atoms}"
                                 f" numbers, hartree/bohr), got {g.size}")
            grads.append(_finite(g.reshape(-1, 3), "the gradient", where))
            e = props.get("return_energy")
        elif driver == "energy":
            e = r.get("return_result")
            grads.append(None)
        else:
            raise InputError(f"{where}: driver {driver!r} is not read (use 'energy' or"
                             " 'gradient' results)")
        if not isinstance(e, int | float) or isinstance(e, bool):
            raise InputError(f"{where}: no energy (properties.return_energy, hartree)")
        energy.append(_finite(e, "the energy", where) * HARTREE)
    has_forces = all(g is not None for g in grads)
    if not has_forces and any(g is not None for g in grads):
        raise InputError(f"{paths[0]}: some results have gradients and some do not; import them"
                         " as separate records")
    g_unit = _unit(_HARTREE_BOHR, _HARTREE_BOHR, "QCSchema")
    forces = (-np.stack(grads) * g_unit) if has_forces else np.zeros((len(pos), mol.n_atoms, 3))
    return _record(record_id or Path(paths[0]).stem, kind, mol, np.stack(pos),
                   np.asarray(energy), forces, has_forces=has_forces)


def _record(rid, kind, mol, pos, energy, forces, *, has_forces, dihedral=None, angles=None):
    from chronograd.fit.data import _check_geometry

    _check_geometry(rid, mol, pos, rid)
    mol.positions = pos[0].copy()
    return QMRecord(rid, kind, mol, pos, np.asarray(energy, np.float64), forces,
                    np.array(["train"] * len(pos)), dihedral, angles, has_forces)


def _grid_angle(key: str, where: str) -> float:
    nums = re.findall(r"-?\d+(?:\.\d+)?", str(key))
    if len(nums) != 1:
        raise InputError(f"{where}: grid point {key!r} is not one angle; only 1-D scans are"
                         " read")
    return float(nums[0])


def read_torsiondrive(path, *, mapped_smiles: str | None = None,
                      record_id: str | None = None) -> QMRecord:
    """A torsion-scan record (energy-only, kind "torsion_scan", its dihedral and angles) from
    a torsiondrive state JSON or a QCFractal TorsionDrive record with final geometries."""
    from chronograd.units import BOHR, HARTREE

    path = Path(path)
    doc = _json(path)
    rid = record_id or path.stem
    where = f"{path} (record {rid!r})"
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object")
    if "grid_status" in doc:  # the torsiondrive package's state
        dihedrals, elements = doc.get("dihedrals"), doc.get("elements")
        if not isinstance(elements, list):
            raise InputError(f"{where}: no 'elements' list")
        smiles = mapped_smiles
        if smiles is None:
            raise InputError(f"{where}: a torsiondrive state holds no SMILES; pass the mapped"
                             " SMILES of its atom order (--smiles)")
        mol = _molecule(smiles, rid, where)
        _check_elements(mol, elements, where)
        points = []
        for key, jobs in doc["grid_status"].items():
            angle = _grid_angle(key, where)
            done = [j for j in jobs if isinstance(j, list | tuple) and len(j) == 3
                    and isinstance(j[2], int | float)]
            if not done:
                raise InputError(f"{where}: grid point {key} has no finished optimization;"
                                 " the scan is incomplete (resume it before importing)")
            best = min(done, key=lambda j: j[2])
            x = np.asarray(best[1], np.float64).reshape(mol.n_atoms, 3) * BOHR
            points.append((angle, _finite(x, f"grid point {key}", where),
                           _finite(best[2], f"the energy at {key}", where)))
    else:  # QCFractal TorsionDrive record with its final geometries
        kw = doc.get("keywords") or {}
        dihedrals = kw.get("dihedrals") if isinstance(kw, dict) else None
        energies = doc.get("final_energy_dict", doc.get("final_energies"))
        molecules = doc.get("final_molecules")
        if not isinstance(energies, dict) or not isinstance(molecules, dict):
            raise InputError(f"{where}: neither a torsiondrive state ('grid_status') nor a"
                             " TorsionDrive record with 'final_energy_dict' and"
                             " 'final_molecules'")
        points, mol = [], None
        for key, e in energies.items():
            m = molecules.get(key)
            if not isinstance(m, dict):
                raise InputError(f"{where}: no final molecule for grid point {key}")
            smiles = mapped_smiles or _mapped_smiles_of(m)
            if smiles is None:
                raise InputError(f"{where}: no mapped SMILES in the molecules; pass one"
                                 " (--smiles)")
            if mol is None:
                mol = _molecule(smiles, rid, where)
            _check_elements(mol, m.get("symbols", []), f"{where} grid point {key}")
            points.append((_grid_angle(key, where), _geometry(m, mol.n_atoms, where),
                           _finite(e, f"the energy at {key}", where)))
    if (not isinstance(dihedrals, list) or len(dihedrals) != 1
            or not isinstance(dihedrals[0], list) or len(dihedrals[0]) != 4):
        raise InputError(f"{where}: 'dihedrals' must hold one dihedral of 4 atoms (1-D scan)")
    dihedral = tuple(int(a) for a in dihedrals[0])
    if len(set(dihedral)) != 4 or not all(0 <= a < mol.n_atoms for a in dihedral):
        raise InputError(f"{where}: dihedral {list(dihedral)} must be 4 distinct atoms in"
                         f" 0..{mol.n_atoms - 1}")
    points.sort(key=lambda p: p[0])
    pos = np.stack([p[1] for p in points])
    energy = np.array([p[2] for p in points]) * HARTREE
    return _record(rid, "torsion_scan", mol, pos, energy, np.zeros_like(pos), has_forces=False,
                   dihedral=dihedral, angles=np.array([p[0] for p in points]))


def _read_xyz_frames(path: Path, what: str):
    """[(comment, symbols, [N, 3] numbers)] of a multi-frame XYZ file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    lines = path.read_text().splitlines()
    frames, k = [], 0
    while k < len(lines):
        if not lines[k].strip():
            k += 1
            continue
        try:
            n = int(lines[k].split()[0])
        except (ValueError, IndexError):
            raise InputError(f"{path}, line {k + 1}: expected the atom count of a frame"
                             f" ({what})") from None
        if k + 2 + n > len(lines):
            raise InputError(f"{path}, line {k + 1}: the frame says {n} atoms but the file ends")
        comment, sym, xyz = lines[k + 1], [], []
        for j in range(k + 2, k + 2 + n):
            parts = lines[j].split()
            try:
                sym.append(parts[0])
                xyz.append([float(v) for v in parts[1:4]])
                assert len(parts) >= 4
            except (ValueError, IndexError, AssertionError):
                raise InputError(f"{path}, line {j + 1}: expected 'element x y z'") from None
        frames.append((comment, sym, np.asarray(xyz)))
        k += 2 + n
    if not frames:
        raise InputError(f"{path}: no frames")
    return frames


def read_xyz(path, *, mapped_smiles: str, energies=None, energy_unit: str = "hartree",
             position_unit: str = "angstrom", gradients=None,
             gradient_unit: str = _HARTREE_BOHR, record_id: str | None = None,
             kind: str = "conformers") -> QMRecord:
    """A record from a multi-frame XYZ file. ``energies``: a list, a text file with one
    number per frame, or None (each comment line: the number after "energy", as in
    ``energy=-154.9``, else its first number). ``gradients``: an XYZ-shaped file of gradient
    vectors per frame (optional: without it the record is energy-only)."""
    path = Path(path)
    rid = record_id or path.stem
    where = f"{path} (record {rid!r})"
    x_unit = _unit(position_unit, "angstrom", where)
    e_unit = _unit(energy_unit, "hartree", where)
    frames = _read_xyz_frames(path, "positions")
    mol = _molecule(mapped_smiles, rid, where)
    for k, (_, sym, _) in enumerate(frames):
        _check_elements(mol, sym, f"{where} frame {k}")
    pos = np.stack([_finite(f[2], f"frame {k}", where) for k, f in enumerate(frames)]) * x_unit
    if energies is None:
        values = []
        for k, (comment, _, _) in enumerate(frames):
            number = r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?"
            named = re.search(rf"\benergy\b\s*[=:]?\s*({number})", comment, re.IGNORECASE)
            nums = [named.group(1)] if named else re.findall(number, comment)
            if not nums:
                raise InputError(f"{where}: frame {k} has no energy on its comment line; pass"
                                 " energies")
            values.append(float(nums[0]))
    elif isinstance(energies, str | Path):
        text = Path(energies).read_text().split() if Path(energies).is_file() else None
        if text is None:
            raise InputError(f"{energies}: no such file")
        try:
            values = [float(v) for v in text]
        except ValueError:
            raise InputError(f"{energies}: expected one number per frame") from None
    else:
        values = list(energies)
    if len(values) != len(frames):
        raise InputError(f"{where}: {len(frames)} frames but {len(values)} energies")
    energy = _finite(values, "an energy", where) * e_unit
    has_forces = gradients is not None
    forces = np.zeros_like(pos)
    if has_forces:
        g_frames = _read_xyz_frames(Path(gradients), "gradients")
        if len(g_frames) != len(frames):
            raise InputError(f"{gradients}: {len(g_frames)} frames of gradients for"
                             f" {len(frames)} geometries")
        g_factor = _unit(gradient_unit, _HARTREE_BOHR, f"{gradients}")
        forces = -np.stack([_finite(f[2], f"gradient frame {k}", str(gradients))
                            for k, f in enumerate(g_frames)]) * g_factor
    return _record(rid, kind, mol, pos, energy, forces, has_forces=has_forces)


def write_qm_dataset(records, path, *, method: str = "unknown", basis: str = "unknown",
                     programs: dict | None = None) -> Path:
    """Write records as a ``chronograd-qm/1`` dataset folder (manifest.json, qm_data.npz) in
    chronograd units; the folder appears whole or not at all. Returns the manifest path."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"{path}: the folder exists and is not empty; choose a new one")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise InputError(f"record ids must be unique, got {ids}")
    arrays, entries = {}, []
    for r in records:
        arrays[f"{r.id}/positions"] = np.asarray(r.positions, np.float64)
        arrays[f"{r.id}/energy"] = np.asarray(r.energy, np.float64)
        arrays[f"{r.id}/atomic_numbers"] = np.asarray(r.molecule.atomic_numbers, np.int64)
        if r.has_forces:
            arrays[f"{r.id}/gradient"] = -np.asarray(r.forces, np.float64)
        entry = {"id": r.id, "kind": r.kind, "name": r.molecule.name,
                 "mapped_smiles": r.molecule.mapped_smiles(), "split": list(map(str, r.split))}
        if r.dihedral is not None:
            entry["dihedral"] = [int(a) for a in r.dihedral]
        if r.angles_deg is not None:
            entry["angles_deg"] = [float(a) for a in r.angles_deg]
        entries.append(entry)
    manifest = {"format": "chronograd-qm/1", "method": method, "basis": basis,
                "programs": programs or {}, "arrays": "qm_data.npz",
                "units": {"positions": "nm", "energy": "kJ/mol", "gradient": "kJ/mol/nm"},
                "records": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        np.savez(tmp / "qm_data.npz", **arrays)
        if path.exists():
            path.rmdir()
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path / "manifest.json"


def validate_qm_dataset(path) -> tuple[list[str], list[str]]:
    """(one line per record, problems) of a dataset: every record is read on its own, so all
    problems are listed, not only the first."""
    from chronograd.fit.data import list_records, load_qm_dataset

    lines, problems = [], []
    try:
        kinds = list_records(path)
    except InputError as e:
        return lines, [str(e)]
    for rid in kinds:
        try:
            (r,) = load_qm_dataset(path, records=[rid])
        except InputError as e:
            problems.append(str(e))
            continue
        e = r.energy - r.energy.min()
        lines.append(f"{rid}: {r.kind}, {len(r.energy)} geometries of {r.molecule.n_atoms}"
                     f" atoms, {'energies and forces' if r.has_forces else 'energies only'},"
                     f" relative energies 0..{e.max():.2f} kJ/mol, splits"
                     f" {dict(zip(*np.unique(r.split, return_counts=True), strict=True))}"
                     + (f", dihedral {list(r.dihedral)}" if r.dihedral else ""))
    return lines, problems
