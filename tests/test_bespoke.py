"""Bespoke torsions: rotatable-bond checks, fragments, SMIRKS that transfer, force fields the
OpenFF toolkit loads with OpenMM energies equal to chronograd's, cached and resumable
torsiondrive scans with GFN2-xTB, and ``chronograd bespoke`` end to end."""

from __future__ import annotations

import os

# GFN2-xTB (tblite) on one thread: the suite runs two test workers on two cores, and an
# OpenMP team per worker would oversubscribe them (read when tblite loads, at its first use).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import re
import shutil

import numpy as np
import pytest

from chronograd.fit.bespoke import BespokeError, check_rotatable, fragment, rotatable_bonds
from chronograd.fit.bespoke.fragment import am1_wiberg_bond_orders, central_dihedral
from chronograd.topology import Molecule
from tests.cli_helpers import run_cli

IBUPROFEN = "CC(C)Cc1ccc(cc1)C(C)C(=O)O"  # atoms 7-10: aryl-CH(CH3)COOH
BUTANE = "CCCC"


def _with_conformer(smiles, name):
    from rdkit.Chem import AllChem

    mol = Molecule.from_smiles(smiles, name=name)
    AllChem.MMFFOptimizeMolecule(mol.rdmol)
    mol.positions = mol.rdmol.GetConformer().GetPositions() * 0.1
    return mol


@pytest.fixture(scope="module")
def ibuprofen():
    return _with_conformer(IBUPROFEN, "ibuprofen")


def test_rotatable_bonds_and_the_bonds_that_are_not(ibuprofen):
    assert rotatable_bonds(ibuprofen) == [(1, 3), (3, 4), (7, 10), (10, 12)]
    assert check_rotatable(ibuprofen, (10, 7)) == (10, 7)
    cases = {(4, 5): "is in a ring", (12, 13): "is a double bond",
             (0, 1): "atom 0 (C) carries no other heavy atom", (0, 5): "are not bonded",
             (0, 99): "atom index 99 is out of range"}
    for bond, why in cases.items():
        with pytest.raises(BespokeError, match=re.escape(why)) as e:
            check_rotatable(ibuprofen, bond)
        assert f"bond {bond[0]}-{bond[1]}" in str(e.value)
    nitrile = Molecule.from_smiles("N#CCC", name="propionitrile")
    with pytest.raises(BespokeError, match="linear"):
        check_rotatable(nitrile, (1, 2))


def test_fragment_keeps_the_bond_environment(ibuprofen):
    f = fragment(ibuprofen, (7, 10))
    # the ring, the acid (both oxygens, its H), the methyl; the isobutyl is capped by H
    assert f.molecule.n_atoms == 21
    assert sorted(f.molecule.atomic_numbers.tolist()).count(8) == 2
    assert abs(f.wbo_fragment - f.wbo_parent) <= 0.03
    assert [int(f.parent_index[a]) for a in f.bond] == [7, 10]
    assert (f.parent_index == -1).sum() == 1  # one cap
    # substituents ortho to the bond stay (2,6-dimethyl on an anilide)
    anilide = _with_conformer("CCCC(=O)Nc1c(C)cccc1C", "anilide")
    bond = next(b for b in rotatable_bonds(anilide)
                if {anilide.rdmol.GetAtomWithIdx(a).GetSymbol() for a in b} == {"N", "C"}
                and anilide.rdmol.GetAtomWithIdx(b[1]).GetIsAromatic())
    g = fragment(anilide, bond)
    kept = set(g.parent_index[g.parent_index >= 0].tolist())
    assert {8, 13} <= kept  # both ortho methyl carbons
    assert abs(g.wbo_fragment - g.wbo_parent) <= 0.03


def test_a_fragmenter_failure_names_the_bond(ibuprofen):
    # sqm with one electron too few (an odd count) fails; its message is passed on
    with pytest.raises(RuntimeError):
        am1_wiberg_bond_orders(ibuprofen.atomic_numbers, ibuprofen.positions * 10, 1)
    odd = lambda z, x, q: am1_wiberg_bond_orders(z, x, q + 1)  # noqa: E731
    with pytest.raises(BespokeError, match=r"fragmenting around bond 7-10 \(C-C\): AM1 Wiberg"):
        fragment(ibuprofen, (7, 10), wbo=odd)


def test_bespoke_parameters_transfer_and_openff_openmm_agree(ibuprofen, tmp_path):
    """The bespoke SMIRKS type every torsion around the bond in the fragment and the parent;
    the starting bespoke force field has the base's energy; with changed k the written
    .offxml loads in the OpenFF toolkit, which types the same torsions, and Interchange's
    OpenMM energy equals chronograd's."""
    import openmm
    from openff.toolkit import ForceField as OFFForceField
    from openff.toolkit import Molecule as OFFMolecule

    import chronograd as cg
    from chronograd.fit.bespoke.smirks import (
        bespoke_torsions,
        check_coverage,
        write_bespoke_terms,
    )
    from tests.smirnoff_reference import interchange_system

    base_name = "openff_unconstrained-2.2.1.offxml"
    base = cg.ForceField(base_name)
    f = fragment(ibuprofen, (7, 10))
    torsions = bespoke_torsions(f.molecule, f.bond, prefix="t-bespoke-7-10")
    assert len(torsions) == 3 and sum(len(t.torsions) for t in torsions) == 6
    write_bespoke_terms(base, f.molecule, torsions, tmp_path / "terms.offxml")
    ff = cg.ForceField(base_name, str(tmp_path / "terms.offxml"))
    ids = {t.id for t in torsions}
    assert check_coverage(ff, f.molecule, f.bond, ids, "fragment") == 0
    assert check_coverage(ff, ibuprofen, (7, 10), ids, "parent") == 0
    with pytest.raises(BespokeError, match="did not transfer"):
        check_coverage(base, ibuprofen, (7, 10), ids, "parent")

    from chronograd.forcefield.charges import assign_charges

    charges = np.asarray(assign_charges(ibuprofen, "am1bcc"))
    ibuprofen.partial_charges = charges
    x = np.asarray(ibuprofen.positions)
    e_base = float(base.create_system(ibuprofen, charges="from-file").energy_fn()(
        x, None, base.params))
    sys_b = ff.create_system(ibuprofen, charges="from-file")
    assert float(sys_b.energy_fn()(x, None, ff.params)) == pytest.approx(e_base, abs=1e-9)

    params = ff.params
    k = np.asarray(params["ProperTorsions"]["k"]).copy()
    rows = [n for n, pid in enumerate(ff.row_info["ProperTorsions"]["k"].ids) if pid in ids]
    assert len(rows) == 12
    k[rows] += np.linspace(-3.0, 4.0, len(rows))  # kJ/mol
    params = dict(params, ProperTorsions=dict(params["ProperTorsions"], k=k))
    ff.to_offxml(tmp_path / "bespoke.offxml", params)
    e_cg = float(sys_b.energy_fn()(x, None, params))
    assert abs(e_cg - e_base) > 1.0

    off_mol = OFFMolecule.from_rdkit(ibuprofen.rdmol, allow_undefined_stereo=True)
    labels = OFFForceField(str(tmp_path / "bespoke.offxml")).label_molecules(
        off_mol.to_topology())[0]["ProperTorsions"]
    around = {key: p.id for key, p in labels.items() if {key[1], key[2]} == {7, 10}}
    assert len(around) == 6 and set(around.values()) == ids
    system = interchange_system(str(tmp_path / "bespoke.offxml"), off_mol, charges)
    ctx = openmm.Context(system, openmm.VerletIntegrator(1.0),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    e_omm = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        openmm.unit.kilojoule_per_mole)
    assert e_omm == pytest.approx(e_cg, abs=1e-6 * abs(e_cg) + 1e-6)


class _Counting:
    """GFN2-xTB that counts its calls and can fail on a given call."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, numbers, coords, charge):
        from chronograd.fit.bespoke.scan import _xtb

        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("SCF did not converge in 250 iterations")
        return _xtb(numbers, coords, charge)


@pytest.fixture(scope="module")
def butane_scan(tmp_path_factory):
    """butane.sdf (read back, so its coordinates are the file's) and the cache of a 90-degree
    scan of its C-C-C-C dihedral, made in three runs: one failing at a point, one resuming,
    one entirely from the cache."""
    from rdkit import Chem

    from chronograd.fit.bespoke.scan import QMEngine, torsion_scan, xtb_engine

    root = tmp_path_factory.mktemp("butane")
    mol = _with_conformer(BUTANE, "butane")
    Chem.MolToMolFile(mol.rdmol, str(root / "butane.sdf"))
    # the molecule the workflow scans: the (here whole-molecule) fragment of the file's
    mol = fragment(Molecule.from_sdf(root / "butane.sdf")[0], (1, 2)).molecule
    dihedral = central_dihedral(mol, (1, 2))
    name = xtb_engine().name
    runs = []
    with pytest.raises(BespokeError) as e:  # geomeTRIC out of steps
        torsion_scan(mol, dihedral, xtb_engine(), spacing=90, cache=root / "cache",
                     max_steps=2)
    runs.append(str(e.value))
    failing = _Counting(fail_at=40)
    try:
        torsion_scan(mol, dihedral, QMEngine(name, "GFN2-xTB", "none", failing), spacing=90,
                     cache=root / "cache")
        runs.append(None)
    except BespokeError as e:
        runs.append(str(e))
    for engine in (_Counting(), _Counting()):
        result = torsion_scan(mol, dihedral, QMEngine(name, "GFN2-xTB", "none", engine),
                              spacing=90, cache=root / "cache")
        runs.append((result, engine.calls))
    return root, runs


@pytest.mark.slow  # ~40 s of GFN2-xTB optimizations on a CI worker
def test_scan_failure_names_the_point_and_the_scan_resumes_from_the_cache(butane_scan):
    root, (steps, failed, (resumed, calls), (again, calls_again)) = butane_scan
    assert "GeomOptNotConvergedError" in steps and "deg failed" in steps
    assert failed is not None and "constrained optimization at" in failed
    assert "SCF did not converge" in failed and "rerun to resume" in failed
    assert resumed.cached >= 1 and calls > 0  # what finished before the failure was reused
    assert np.allclose(resumed.angles_deg, [-90, 0, 90, 180])
    rel = (resumed.energy - resumed.energy.min()) / 4.184
    assert np.argmin(rel) == 3 and 0.3 < rel[0] < 2.0 and 3.0 < rel[1] < 9.0  # gauche, syn
    assert calls_again == 0 and again.cached == again.optimizations
    np.testing.assert_array_equal(again.energy, resumed.energy)
    assert not list((root / "cache").glob(".*.tmp"))


@pytest.mark.slow  # needs the scan fixture above
def test_bespoke_cli_end_to_end(butane_scan, tmp_path):
    root, _ = butane_scan
    out = tmp_path / "out"
    shutil.copytree(root / "cache", out / "cache" / "bond-1-2")
    r = run_cli("bespoke", root / "butane.sdf", "--bond", "1-2", "--spacing", "90",
                "-o", out, "--iterations", "10")
    assert r.code == 0, r.err
    report = json.loads((out / "report.json").read_text())
    (bond,) = report["bonds"]
    assert bond["scan"]["cached"] == bond["scan"]["optimizations"]  # no QM was rerun
    assert bond["rmse_kj_mol"]["after"] < 0.5 * bond["rmse_kj_mol"]["before"]
    assert set(bond["seconds"]) == {"fragment", "smirks", "scan", "fit"}
    assert (out / "profiles.png").stat().st_size > 0 and "RMSE" in (out / "report.md").read_text()
    from openff.toolkit import ForceField as OFFForceField

    OFFForceField(str(out / report["output"]))  # loads in the OpenFF toolkit
    assert not (out / ".staging").exists()


@pytest.mark.parametrize("bond, why", [("4-5", "is in a ring"), ("0-1", "no other heavy"),
                                       ("1-x", "two 0-based atom indices")])
def test_bespoke_cli_bad_bond(tmp_path, bond, why):
    from rdkit import Chem

    mol = _with_conformer("CCCc1ccccc1", "propylbenzene")
    Chem.MolToMolFile(mol.rdmol, str(tmp_path / "m.sdf"))
    r = run_cli("bespoke", tmp_path / "m.sdf", "--bond", bond, "-o", tmp_path / "out")
    assert why in r.one_line_error()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dft_engine_is_the_level_of_the_shipped_qm_data():
    """``--qm dft`` (PySCF + dftd3, the [qm] extra that ``make test-slow`` installs) gives the
    energy and gradient that data/qm/make_qm_data.py recorded for the optimized ethanol."""
    from pathlib import Path

    from chronograd.fit.bespoke.scan import BOHR_NM, dft_engine

    pytest.importorskip("pyscf")
    data = Path(__file__).parent.parent / "data" / "qm"
    with np.load(data / "qm_data.npz") as arrays:
        x = arrays["opt-ethanol/positions"][0]  # angstrom
        e_ref = float(arrays["opt-ethanol/energy"][0])  # hartree
        g_ref = arrays["opt-ethanol/gradient"][0]  # hartree/bohr
        z = arrays["opt-ethanol/atomic_numbers"]
    engine = dft_engine()
    assert engine.method == "B3LYP-D3BJ" and engine.basis == "6-31G*"
    e, g = engine(z, x / (10 * BOHR_NM), 0)
    assert e == pytest.approx(e_ref, abs=1e-7)
    np.testing.assert_allclose(g, g_ref, atol=1e-6)
