"""`chronograd energy --ff` and `chronograd parameterize`: outputs and one-line errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from rdkit import Chem

import chronograd as cg
from chronograd.forcefield import ForceField
from chronograd.topology import Molecule

CLI = [sys.executable, "-m", "chronograd.cli.main"]
FF = "openff-2.2.1.offxml"


def run(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def sdf(tmp_path_factory):
    """Acetanilide with Gasteiger charges written as atom.dprop.PartialCharge."""
    from chronograd.forcefield.charges import gasteiger_charges

    mol = Molecule.from_smiles("CC(=O)Nc1ccccc1", name="acetanilide")
    rd = Chem.Mol(mol.rdmol)
    for atom, q in zip(rd.GetAtoms(), gasteiger_charges(mol), strict=True):
        atom.SetDoubleProp("PartialCharge", float(q))
    Chem.CreateAtomDoublePropertyList(rd, "PartialCharge")
    path = tmp_path_factory.mktemp("ff") / "acetanilide.sdf"
    with Chem.SDWriter(str(path)) as writer:
        writer.write(rd)
    return path


def test_energy_json_terms_and_gradient_csv(sdf, tmp_path):
    res = run("energy", "--ff", FF, sdf, "--json", "--grad-params", tmp_path / "g.csv")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert {"harmonic_bond", "harmonic_angle", "periodic_torsion", "lennard_jones",
            "coulomb"} <= set(out["terms"])
    mol = Molecule.from_sdf(sdf)[0]
    system = ForceField(FF).create_system(mol, charges="from-file")
    assert out["total"] == pytest.approx(system.energy(mol.positions), rel=1e-10)
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert len(rows) > 30
    assert {r["handler"] for r in rows} >= {"Bonds", "Angles", "ProperTorsions", "vdW"}
    assert any(float(r["gradient"]) != 0 for r in rows)
    # SMIRKS and ids, and the scaled sensitivity gradient x prior width
    from chronograd.fit.objective import DEFAULT_PRIORS

    t17 = [r for r in rows if r["handler"] == "ProperTorsions" and r["smirks"].startswith("[")]
    assert t17 and all(r["id"].startswith("t") for r in t17)
    for r in rows:
        width = DEFAULT_PRIORS.get(f"{r['handler']}.{r['attribute'].rstrip('0123456789')}")
        if width is not None:
            assert float(r["scaled_sensitivity"]) == pytest.approx(float(r["gradient"]) * width)


def test_parameterize_writes_a_loadable_system(tmp_path):
    res = run("parameterize", "--smiles", "CCO", "--ff", FF, "-o", tmp_path / "s.json",
              "--charges", "gasteiger")
    assert res.returncode == 0, res.stderr
    system = cg.load(tmp_path / "s.json")
    assert system.n_atoms == 9
    assert set(system.term_names()) == {"harmonic_bond", "harmonic_angle", "periodic_torsion",
                                        "lennard_jones", "coulomb"}


def test_parameterize_combines_force_fields_with_virtual_sites(tmp_path):
    res = run("parameterize", "--smiles", "O", "--ff", "openff-2.2.1.offxml,tip5p.offxml",
              "-o", tmp_path / "w.json")
    assert res.returncode == 0, res.stderr
    loaded = cg.load(tmp_path / "w.json")
    water = Molecule.from_smiles("O")
    direct = ForceField("openff-2.2.1.offxml", "tip5p.offxml").create_system(water)
    assert loaded.n_atoms == direct.n_atoms == 5  # TIP5P: two lone-pair sites
    assert loaded.energy(water.positions) == pytest.approx(direct.energy(water.positions),
                                                           rel=1e-12)


@pytest.mark.parametrize(
    "args, expect",
    [
        (["parameterize", "--smiles", "C1CC(", "--ff", FF, "-o", "x.json"], "RDKit rejected"),
        (["parameterize", "--smiles", "C[Se]C", "--ff", FF, "-o", "x.json"],
         "no Bonds parameter matches atoms (0, 1) (C-Se)"),
        (["parameterize", "--smiles", "[CH3]", "--ff", FF, "-o", "x.json"],
         "radicals are not supported"),
        (["parameterize", "--smiles", "CCO", "--ff", "openff-9.9.9.offxml", "-o", "x.json"],
         "no force field of that name"),
    ],
)
def test_bad_input_one_clear_message(tmp_path, args, expect):
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode != 0
    assert expect in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x.json").exists()  # nothing half-written


def test_malformed_sdf_and_offxml(tmp_path, sdf):
    bad = tmp_path / "bad.sdf"
    bad.write_text(sdf.read_text().replace("  0  0  0  0  0  0  0  0999 V2000",
                                           "  0  0  0  0  0  0  0  0999 V2000", 1)[:400])
    res = run("energy", "--ff", FF, bad)
    assert res.returncode != 0 and "bad.sdf" in res.stderr and "Traceback" not in res.stderr
    broken = tmp_path / "broken.offxml"
    broken.write_text('<?xml version="1.0"?>\n<SMIRNOFF version="0.3">\n<Bonds>\n</SMIRNOFF>\n')
    res = run("energy", "--ff", broken, sdf)
    assert res.returncode != 0 and "line 4" in res.stderr


def test_positions_are_used_not_regenerated(sdf):
    mol = Molecule.from_sdf(sdf)[0]
    assert mol.partial_charges is not None
    np.testing.assert_allclose(mol.partial_charges.sum(), 0.0, atol=1e-6)
