"""Bespoke torsion fits for two drug-like molecules, end to end, with the wall time of every
stage.

Ibuprofen's aryl-CH(CH3)COOH bond (Sage types it with the generic t17 shared by every
aryl-sp3 torsion) and lidocaine's anilide aryl-N bond (2,6-dimethyl ortho substituents):
fragment (RDKit + AM1 Wiberg bond orders from sqm), molecule-specific SMIRKS, a torsiondrive
scan of the fragment at 15 degrees with geomeTRIC and GFN2-xTB (tblite), a Levenberg-Marquardt
fit of the new k1..k4 (``chronograd bespoke``'s workflow). Then the bespoke ``.offxml`` is
loaded in the OpenFF toolkit, the parent molecule is parametrized through Interchange, and
its OpenMM energy is compared with chronograd's. Writes the "bespoke" section of RESULTS.md
and ``docs/img/bespoke_profiles.png``. Scans are cached in ``out/bench-bespoke/`` (a rerun
reuses them; delete it for fresh scan timings). Run:
``python benchmarks/bench_bespoke.py`` (about 10 minutes on 2 cores with an empty cache).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "out" / "bench-bespoke"
MOLECULES = {  # name: (SMILES, SMARTS whose tagged atoms 1, 2 are the bond)
    "ibuprofen": ("CC(C)Cc1ccc(cc1)C(C)C(=O)O", "c:[c:1]-[CX4H1:2](-[CH3])-C(=O)O"),
    "lidocaine": ("CCN(CC)CC(=O)Nc1c(C)cccc1C", "[c:1]-[NX3H1:2]-C(=O)"),
}


def molecule_file(name, smiles) -> Path:
    from rdkit import Chem
    from rdkit.Chem import AllChem

    path = WORK / f"{name}.sdf"
    if not path.exists():
        m = Chem.AddHs(Chem.MolFromSmiles(smiles))
        params = AllChem.ETKDGv3()
        params.randomSeed = 20261201
        AllChem.EmbedMolecule(m, params)
        AllChem.MMFFOptimizeMolecule(m)
        m.SetProp("_Name", name)
        Chem.MolToMolFile(m, str(path))
    return path


def bond_of(path, smarts):
    from rdkit import Chem

    mol = Chem.MolFromMolFile(str(path), removeHs=False)
    q = Chem.MolFromSmarts(smarts)
    tagged = sorted((a.GetAtomMapNum(), a.GetIdx()) for a in q.GetAtoms() if a.GetAtomMapNum())
    match = mol.GetSubstructMatch(q)
    return tuple(match[i] for _, i in tagged)


def openmm_check(offxml, sdf):
    """(chronograd, OpenMM via OpenFF toolkit + Interchange) energies of the parent (kJ/mol)."""
    import openmm
    from openff.interchange import Interchange
    from openff.toolkit import ForceField as OFFForceField
    from openff.toolkit import Molecule as OFFMolecule
    from openff.units import unit

    import chronograd as cg
    from chronograd.forcefield.charges import assign_charges

    mol = cg.Molecule.from_sdf(sdf)[0]
    charges = np.asarray(assign_charges(mol, "am1bcc"))
    mol.partial_charges = charges
    ff = cg.ForceField(str(offxml))
    x = np.asarray(mol.positions)
    e_cg = float(ff.create_system(mol, charges="from-file").energy_fn()(x, None, ff.params))
    off = OFFMolecule.from_rdkit(mol.rdmol, allow_undefined_stereo=True)
    off.partial_charges = charges * unit.elementary_charge
    system = Interchange.from_smirnoff(OFFForceField(str(offxml)), [off],
                                       charge_from_molecules=[off]).to_openmm_system()
    ctx = openmm.Context(system, openmm.VerletIntegrator(1.0),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    e_omm = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        openmm.unit.kilojoule_per_mole)
    return e_cg, e_omm


def main() -> None:
    from chronograd.fit.bespoke import run_bespoke

    WORK.mkdir(parents=True, exist_ok=True)
    rows, checks, profiles = [], {}, []
    for name, (smiles, smarts) in MOLECULES.items():
        sdf = molecule_file(name, smiles)
        bond = bond_of(sdf, smarts)
        out = WORK / name
        for stale in ("work", "report.json"):  # fit again; keep the scan cache
            p = out / stale
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        t = time.perf_counter()
        report = run_bespoke(sdf, bonds=[bond], qm="xtb", out=out, spacing=15,
                             iterations=30, log=lambda s: print(s, flush=True))
        total = time.perf_counter() - t
        (b,) = report["bonds"]
        checks[name] = openmm_check(out / report["output"], sdf)
        rows.append((name, b, total))
        prof = json.loads((out / "report.json").read_text())
        profiles.append((name, prof))
    lines = ["## Bespoke torsions (issue 18; `benchmarks/bench_bespoke.py`)", "",
             machine_line(), "",
             "`chronograd bespoke`'s workflow on two drug-like molecules not in the shipped"
             " data: fragment around the bond (RDKit, AM1 Wiberg bond order from sqm within"
             " 0.03 of the parent's), molecule-specific SMIRKS appended to Sage 2.2.1"
             " (unconstrained), torsiondrive scan of the fragment at 15 deg (geomeTRIC"
             " constrained optimizations, GFN2-xTB through tblite), Levenberg-Marquardt fit of"
             " the new k1..k4 with MM single points at the QM geometries. RMSE of relative"
             " energies (kcal/mol) over the scan, each profile relative to its QM minimum."
             " Times in seconds; a scan's time is for an empty cache unless the optimizations"
             " column says they were cached.", "",
             "| molecule (bond) | fragment atoms (parent) | WBO parent / fragment |"
             " bespoke parameters | scan points (optimizations, cached) | RMSE Sage 2.2.1 |"
             " RMSE bespoke | fit iterations (stopped) | fragment | SMIRKS | scan | fit |"
             " total |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    import chronograd as cg

    for name, b, total in rows:
        s = b["seconds"]
        n_parent = cg.Molecule.from_sdf(WORK / f"{name}.sdf")[0].n_atoms
        lines.append(
            f"| {name} ({b['label']}) | {b['fragment']['atoms']} ({n_parent}) |"
            f" {b['fragment']['wbo_parent']:.3f} / {b['fragment']['wbo_fragment']:.3f} |"
            f" {len(b['parameters'])} | {b['scan']['points']} ({b['scan']['optimizations']},"
            f" {b['scan']['cached']}) | {b['rmse_kcal_mol']['before']:.2f} |"
            f" {b['rmse_kcal_mol']['after']:.2f} | {b['fit']['iterations']}"
            f" ({b['fit']['stopped']}) | {s['fragment']:.1f} | {s['smirks']:.1f} |"
            f" {s['scan']:.0f} | {s['fit']:.0f} | {total:.0f} |")
    lines += ["", "The bespoke `.offxml` loads in the OpenFF toolkit (0.18); the parent"
              " molecule parametrized by it through Interchange 0.5.2, energy by OpenMM"
              " Reference vs chronograd (same AM1-BCC charges, kJ/mol):", "",
              "| molecule | chronograd | OpenMM | difference |", "|---|---|---|---|"]
    for name, (e_cg, e_omm) in checks.items():
        lines.append(f"| {name} | {e_cg:.6f} | {e_omm:.6f} | {e_cg - e_omm:.1e} |")
    lines += ["", "Profiles: `docs/img/bespoke_profiles.png`."]
    write_section("bespoke", "\n".join(lines))
    combined = ROOT / "docs/img/bespoke_profiles.png"
    _plot_all([WORK / n / "work" for n in MOLECULES], rows, combined)


def _plot_all(works, rows, path):
    from chronograd.fit.bespoke.workflow import _plot, _profile_rmse
    from chronograd.fit.data import load_qm_dataset

    profiles = []
    for work, (name, b, _) in zip(works, rows, strict=True):
        tag = f"{b['bond'][0]}-{b['bond'][1]}"
        records = load_qm_dataset(work / f"bond-{tag}-scan")
        fitted = next((work / f"bond-{tag}-fit").glob("*-fitted.offxml"))
        _, before = _profile_rmse(work / f"bond-{tag}-start.offxml", records, "none")
        _, after = _profile_rmse(fitted, records, "none")
        profiles.append((f"{name}, bond {b['label']}", before[0], after[0]))
    _plot(profiles, path)


if __name__ == "__main__":
    main()
