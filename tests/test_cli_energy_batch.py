"""`chronograd energy --ff FF a.sdf b.sdf ...`: JSON Lines, one compiled program per bucket,
and a bad file reported by name while the others are still evaluated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli
from rdkit import Chem
from rdkit.Chem import AllChem

import chronograd as cg
from chronograd.topology import Molecule

FF = "openff-2.2.1.offxml"
SMILES = {"ethanol.sdf": "CCO", "phenol.sdf": "c1ccccc1O", "paracetamol.sdf":
          "CC(=O)Nc1ccc(O)cc1", "octane.sdf": "CCCCCCCC"}


def _write(path, smiles):
    rd = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(rd, randomSeed=7)
    Chem.MolToMolFile(rd, str(path))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("sdfs")
    for name, smi in SMILES.items():
        _write(d / name, smi)
    (d / "broken.sdf").write_text("not a molecule\n\n\n  1  0  0\nM  END\n")
    _write(d / "silane.sdf", "[SiH3][SiH3]")  # Sage has no parameters for Si-Si
    return d


@pytest.mark.slow
def test_many_files_give_json_lines_equal_to_single_runs(folder):
    files = list(SMILES)
    res = run_cli("energy", "--ff", FF, *files, "--charges", "gasteiger", "--json", cwd=folder)
    assert res.code == 0, res.err
    lines = [json.loads(line) for line in res.out.splitlines()]
    assert [r["file"] for r in lines] == files
    ff = cg.ForceField(FF)
    for r in lines:
        assert set(r) == {"file", "total", "terms", "units"} and r["units"] == "kJ/mol"
        mol = Molecule.from_sdf(folder / r["file"])[0]
        ref = ff.create_system(mol, charges="gasteiger").energy_terms(mol.positions)
        assert r["terms"] == pytest.approx(ref, rel=1e-12, abs=1e-10)
        assert r["total"] == pytest.approx(sum(ref.values()), rel=1e-12)
        single = run_cli("energy", "--ff", FF, r["file"], "--charges", "gasteiger", "--json",
                         cwd=folder)
        assert json.loads(single.out)["total"] == pytest.approx(r["total"], rel=1e-12)


def test_a_bad_file_is_named_and_the_others_are_still_reported(folder):
    files = ["ethanol.sdf", "broken.sdf", "phenol.sdf", "silane.sdf"]
    res = run_cli("energy", "--ff", FF, *files, "--charges", "gasteiger", "--json", cwd=folder)
    assert res.code == 1
    assert "Traceback" not in res.err
    lines = [json.loads(line) for line in res.out.splitlines()]
    assert [r["file"] for r in lines] == files
    assert "total" in lines[0] and "total" in lines[2]
    assert lines[1]["error"].startswith("broken.sdf: ")
    assert lines[3]["error"].startswith("silane.sdf: ") and "Si" in lines[3]["error"]
    errors = [line for line in res.err.splitlines() if line.strip()]
    assert errors[0].startswith("error: broken.sdf: ")
    assert errors[1].startswith("error: silane.sdf: ")
    assert errors[-1] == "error: 2 of 4 inputs failed"
    table = run_cli("energy", "--ff", FF, *files, "--charges", "gasteiger", cwd=folder)
    assert table.code == 1
    assert table.out.splitlines()[2].startswith("broken.sdf") and "error" in table.out


def test_many_files_write_forces_into_a_folder(folder):
    res = run_cli("energy", "--ff", FF, "ethanol.sdf", "phenol.sdf", "--forces", "f.npy",
                  cwd=folder)
    assert "with several inputs --forces names an existing folder" in res.one_line_error()
    (folder / "forces").mkdir()
    res = run_cli("energy", "--ff", FF, "ethanol.sdf", "phenol.sdf", "--forces", "forces",
                  "--json", cwd=folder)
    assert res.code == 0, res.err
    for line, stem in zip(res.out.splitlines(), ("ethanol", "phenol"), strict=True):
        record = json.loads(line)
        single = run_cli("energy", "--ff", FF, f"{stem}.sdf", "--forces", f"{stem}-1.npy",
                         cwd=folder)
        assert single.code == 0, single.err
        np.testing.assert_allclose(np.load(folder / "forces" / f"{stem}.npy"),
                                   np.load(folder / f"{stem}-1.npy"), rtol=1e-8, atol=1e-8)
        assert record["forces"].endswith(f"{stem}.npy")
