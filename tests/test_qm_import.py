"""QM data in: QCSchema AtomicResult and TorsionDrive JSON (fixtures written to the published
schemas and validated by qcelemental), XYZ with declared units, energy-only records, the
``chronograd qm`` commands, and errors naming the file, record and atom."""

import json

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolTransforms

from chronograd.cli.main import main
from chronograd.errors import InputError
from chronograd.fit.data import load_qm_dataset
from chronograd.fit.qm_import import (
    read_qcschema,
    read_torsiondrive,
    read_xyz,
    write_qm_dataset,
)
from chronograd.units import BOHR, HARTREE

ETHANOL = "[C:1]([C:2]([O:3][H:9])([H:7])[H:8])([H:4])([H:5])[H:6]"
DIHEDRAL = [0, 1, 2, 8]  # C-C-O-H


def _conformer(angle=None, seed=0):
    """Ethanol positions (angstrom) in the mapped atom order, optionally at a C-C-O-H angle."""
    ps = Chem.SmilesParserParams()
    ps.removeHs = False
    mol = Chem.MolFromSmiles(ETHANOL, ps)
    order = [a.GetAtomMapNum() - 1 for a in mol.GetAtoms()]
    mol = Chem.RenumberAtoms(mol, [order.index(k) for k in range(len(order))])
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    conf = mol.GetConformer()
    if angle is not None:
        rdMolTransforms.SetDihedralDeg(conf, *DIHEDRAL, float(angle))
    return np.array(conf.GetPositions()), [a.GetSymbol() for a in mol.GetAtoms()]


def _atomic_result(x_ang, symbols, energy, gradient=None, *, smiles=ETHANOL):
    mol = {"schema_name": "qcschema_molecule", "schema_version": 2, "symbols": symbols,
           "geometry": (x_ang * 0.1 / BOHR).ravel().tolist(), "molecular_charge": 0.0,
           "molecular_multiplicity": 1,
           "extras": {"canonical_isomeric_explicit_hydrogen_mapped_smiles": smiles}}
    return {"schema_name": "qcschema_output", "schema_version": 1, "molecule": mol,
            "driver": "energy" if gradient is None else "gradient",
            "model": {"method": "b3lyp-d3bj", "basis": "dzvp"}, "keywords": {},
            "properties": {"return_energy": energy},
            "return_result": energy if gradient is None else gradient.ravel().tolist(),
            "success": True, "provenance": {"creator": "fixture", "version": "0", "routine": ""}}


def test_qcschema_fixture_matches_the_published_schema_and_imports(tmp_path):
    from qcelemental.models import AtomicResult

    files = []
    rng = np.random.default_rng(0)
    for k in range(3):
        x, sym = _conformer(seed=k)
        g = rng.normal(0, 0.01, x.shape)
        doc = _atomic_result(x, sym, -154.9 + 0.001 * k, g)
        AtomicResult(**doc)  # the fixture is valid QCSchema
        path = tmp_path / f"r{k}.json"
        path.write_text(json.dumps(doc))
        files.append((path, x, g))
    rec = read_qcschema([f[0] for f in files], record_id="ethanol")
    assert rec.has_forces and rec.positions.shape == (3, 9, 3)
    np.testing.assert_allclose(rec.positions[1], files[1][1] * 0.1, atol=1e-12)  # nm
    np.testing.assert_allclose(rec.forces[2], -files[2][2] * HARTREE / BOHR, rtol=1e-12)
    np.testing.assert_allclose(rec.energy, (-154.9 + 0.001 * np.arange(3)) * HARTREE)
    manifest = write_qm_dataset([rec], tmp_path / "ds", method="b3lyp-d3bj", basis="dzvp")
    (back,) = load_qm_dataset(manifest.parent)
    np.testing.assert_allclose(back.forces, rec.forces, rtol=1e-12)
    np.testing.assert_allclose(back.energy, rec.energy, rtol=1e-12)


def test_qcschema_other_molecule_or_atom_order_or_failure_is_named(tmp_path):
    x, sym = _conformer()
    swapped = list(sym)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    bad = tmp_path / "swapped.json"
    bad.write_text(json.dumps(_atomic_result(x, swapped, -154.9)))
    with pytest.raises(InputError, match="swapped.json: atom 2 is H in the file but O"):
        read_qcschema([bad])
    other = tmp_path / "other.json"
    doc = _atomic_result(x, sym, -154.9, smiles="[C:1]([H:2])([H:3])([H:4])[H:5]")
    other.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="9 atoms in the file but 5 in the mapped SMILES"):
        read_qcschema([other])
    failed = tmp_path / "failed.json"
    doc = _atomic_result(x, sym, -154.9)
    doc.update(success=False, error={"error_type": "scf", "error_message": "SCF did not"
                                                                           " converge"})
    failed.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="failed.json: the QM calculation failed .SCF did not"):
        read_qcschema([failed])


def _torsiondrive_state(tmp_path, angles):
    grid_status, elements = {}, None
    for a in angles:
        x, elements = _conformer(a)
        e = -154.9 + 0.002 * (1 + np.cos(np.radians(3 * a)))
        coords = (x * 0.1 / BOHR).ravel().tolist()
        grid_status[str(a)] = [[coords, coords, e], [coords, coords, e + 0.01]]
    state = {"dihedrals": [DIHEDRAL], "grid_spacing": [30], "elements": elements,
             "init_coords": [grid_status[str(angles[0])][0][0]], "grid_status": grid_status,
             "dihedral_ranges": None, "energy_decrease_thresh": None,
             "energy_upper_limit": None}
    path = tmp_path / "td_state.json"
    path.write_text(json.dumps(state))
    return path


def test_torsiondrive_state_imports_as_an_energy_only_scan(tmp_path):
    angles = [-180, -120, -60, 0, 60, 120]
    path = _torsiondrive_state(tmp_path, angles)
    scan = read_torsiondrive(path, mapped_smiles=ETHANOL, record_id="etoh_scan")
    assert scan.kind == "torsion_scan" and not scan.has_forces
    assert scan.dihedral == tuple(DIHEDRAL)
    np.testing.assert_allclose(scan.angles_deg, angles)
    want = (-154.9 + 0.002 * (1 + np.cos(np.radians(3 * np.array(angles))))) * HARTREE
    np.testing.assert_allclose(scan.energy, want)  # the lowest optimization per grid point
    from chronograd.potentials.geometry import dihedral_angles

    got = np.degrees(np.asarray(dihedral_angles(scan.positions[3], None,
                                                np.array([DIHEDRAL]))))
    assert got[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError, match="holds no SMILES"):
        read_torsiondrive(path)


def test_energy_only_scan_fits(tmp_path):
    """An energy-only torsion scan enters an EnergyForceTarget: force rows are zero, the
    force RMSE is None, and the energy residuals move with theta."""
    import jax

    from chronograd.fit.targets import EnergyForceTarget
    from chronograd.forcefield import ForceField

    path = _torsiondrive_state(tmp_path, [-180, -120, -60, 0, 60, 120])
    scan = read_torsiondrive(path, mapped_smiles=ETHANOL)
    ff = ForceField("openff_unconstrained-2.2.1.offxml")
    target = EnergyForceTarget(ff, [scan], charges="am1bcc", split=None)
    assert target.n_force == 0
    theta = ff.params
    m = target.metrics(theta)
    assert m["train"]["force_rmse"] is None and m["train"]["energy_rmse"] > 0
    g = jax.grad(target.loss)(theta)
    leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(g)]
    assert all(np.all(np.isfinite(v)) for v in leaves)
    assert max(float(np.abs(v).max()) for v in leaves if v.size) > 0


def test_xyz_with_declared_units_and_the_qm_commands(tmp_path, capsys):
    frames, energies = [], []
    for k, a in enumerate((60, 180)):
        x, sym = _conformer(a)
        frames.append(f"9\nscan point {k} energy {-97000.0 + k:.3f}\n" + "\n".join(
            f"{s} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}" for s, p in zip(sym, x, strict=True)))
        energies.append(-97000.0 + k)
    xyz = tmp_path / "scan.xyz"
    xyz.write_text("\n".join(frames) + "\n")
    rec = read_xyz(xyz, mapped_smiles=ETHANOL, energy_unit="kcal/mol")
    np.testing.assert_allclose(rec.energy, np.array(energies) * 4.184)
    assert not rec.has_forces
    out = tmp_path / "ds"
    assert main(["qm", "import", "xyz", str(xyz), "--out", str(out), "--smiles", ETHANOL,
                 "--energy-unit", "kcal/mol"]) == 0
    assert main(["qm", "validate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "scan: conformers, 2 geometries of 9 atoms, energies only" in text
    assert "1 records, no problems" in text
    # a broken dataset: every problem listed, exit 1, one line per problem, no traceback
    (out / "qm_data.npz").unlink()
    assert main(["qm", "validate", str(out)]) == 1
    err = capsys.readouterr().err
    assert "qm_data.npz is missing" in err and "Traceback" not in err
    assert main(["qm", "import", "xyz", str(xyz), "--out", str(tmp_path / "x"), "--smiles",
                 ETHANOL, "--energy-unit", "kcal"]) == 1
    assert "the unit 'kcal' is energy; expected energy/amount" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_unit_spellings_of_qm_datasets():
    """The spellings users write: kcal/mol, kJ/mol, eV, hartree; per bohr, angstrom, nm."""
    from chronograd.fit.data import _unit_factor

    cases = {"kcal/mol": 4.184, "kJ/mol": 1.0, "kcal/mol/angstrom": 41.84, "kJ/mol/nm": 1.0,
             "hartree/bohr": HARTREE / BOHR, "eV/angstrom": 964.8533212331001,
             "Hartree": HARTREE, "eV": 96.48533212331002, "kcal / mol / Å": 41.84}
    for spelling, factor in cases.items():
        example = "hartree/bohr" if spelling.count("/") > 1 or "bohr" in spelling or (
            "angstrom" in spelling or "Å" in spelling or "nm" in spelling) else "hartree"
        got = _unit_factor({"q": spelling}, "q", "m.json", example)
        assert got == pytest.approx(factor, rel=1e-12), spelling
    with pytest.raises(InputError, match="expected energy/amount, e.g. 'hartree', 'kcal/mol'"):
        _unit_factor({"energy": "kcal/mol/angstrom"}, "energy", "m.json", "hartree")
    with pytest.raises(InputError, match="cannot read the units 'kcal/mool'"):
        _unit_factor({"energy": "kcal/mool"}, "energy", "m.json", "hartree")
