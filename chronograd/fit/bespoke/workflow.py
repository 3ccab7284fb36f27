"""Bespoke torsions end to end: fragment, SMIRKS, QM torsion scan, fit, report.

    summary = run_bespoke("ibuprofen.sdf", bonds=[(8, 13)], qm="xtb", out="bespoke-out")

For each rotatable bond (or the ones given): the fragment around it, molecule-specific torsion
parameters appended to the force field (``smirks.py``), a torsiondrive scan of the fragment
(``scan.py``, cached in ``OUT/cache``), and a Levenberg-Marquardt fit of the new parameters' k
to the scan (the ``torsion_profile`` target). Bonds are fitted one after another, each starting
from the force field the previous one produced. Writes ``OUT/<name>-bespoke.offxml``,
``OUT/report.json``, ``OUT/report.md`` and ``OUT/profiles.png``; scans and fits are kept under
``OUT/work/``. Rerunning with the same ``OUT`` resumes: finished optimizations come from the
cache.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from chronograd.fit.bespoke.fragment import (
    BespokeError,
    bond_label,
    central_dihedral,
    check_rotatable,
    fragment,
    rotatable_bonds,
)

DEFAULT_FORCEFIELD = "openff_unconstrained-2.2.1.offxml"


def _profile_rmse(offxml, records, relaxation):
    """(RMSE kJ/mol of relative energies, per record (angles, qm, mm))."""
    import chronograd as cg
    from chronograd.fit.targets import TorsionProfileTarget

    ff = cg.ForceField(str(offxml))
    target = TorsionProfileTarget(ff, records, relaxation=relaxation, split=None)
    preds = target.predictions(ff.params)
    err = np.concatenate([p["mm_energy"] - p["qm_energy"] for p in preds])
    return float(np.sqrt(np.mean(err ** 2))), [
        (np.asarray(p["angles_deg"]), np.asarray(p["qm_energy"]), np.asarray(p["mm_energy"]))
        for p in preds]


def _fit_config(start, dataset, ids, directory, *, relaxation, iterations) -> str:
    return "\n".join([
        "# written by chronograd bespoke", "[forcefield]", f"file = {json.dumps(str(start))}",
        'charges = "am1bcc"', "", "[[parameters]]", 'handler = "ProperTorsions"',
        f"ids = {json.dumps(list(ids))}", 'attributes = ["k"]', "", "[priors]",
        '"ProperTorsions.k" = "1.0 * kilocalorie_per_mole"', "", "[objective]",
        "prior_weight = 0.1", "", "[[targets]]", 'name = "torsion-scan"',
        'type = "torsion_profile"', f"dataset = {json.dumps(str(dataset))}",
        'kinds = ["torsion_scan"]', 'energy_denominator = "1.0 * kilocalorie_per_mole"',
        f'relaxation = "{relaxation}"', "", "[optimizer]", 'method = "levenberg-marquardt"',
        f"iterations = {int(iterations)}", "", "[output]",
        f"directory = {json.dumps(str(directory))}", ""])


def _load_molecule(molecule):
    from chronograd.topology import Molecule

    if isinstance(molecule, Molecule):
        return molecule
    path = Path(molecule)
    mols = Molecule.from_sdf(path)
    if len(mols) != 1:
        raise BespokeError(f"{path}: holds {len(mols)} molecules; give one molecule per file")
    mol = mols[0]
    if mol.positions is None or not np.any(mol.positions):
        raise BespokeError(f"{path}: the molecule has no 3D coordinates; bespoke fitting starts"
                           " from them (write the SDF with a conformer)")
    if not mol.name:
        mol.name = path.stem
    return mol


def run_bespoke(molecule, *, bonds=None, qm: str = "xtb", out,
                forcefield: str = DEFAULT_FORCEFIELD, spacing: int = 15,
                relaxation: str = "none", iterations: int = 30, threshold: float = 0.03,
                engine=None, log=print) -> dict:
    """Fit bespoke torsions for ``bonds`` (pairs of 0-based atom indices; default every
    rotatable bond) of ``molecule`` (a Molecule with a conformer, or an SDF path). ``engine``
    overrides ``qm`` with a ``scan.QMEngine``. Returns the report dict (also in
    ``OUT/report.json``).

    Raises:
        BespokeError: a bond that is not rotatable or sits in a ring, a fragmenting failure, a
            scan point whose QM optimization fails (the scan resumes from the cache on rerun).
    """
    import chronograd as cg
    from chronograd.fit import load_config, run_fit
    from chronograd.fit.bespoke.scan import ENGINES, torsion_scan
    from chronograd.fit.bespoke.smirks import bespoke_torsions, check_coverage, write_bespoke_terms
    from chronograd.fit.data import QMRecord, load_qm_dataset
    from chronograd.fit.qm_import import write_qm_dataset

    mol = _load_molecule(molecule)
    if relaxation not in ("none", "restrained"):
        raise BespokeError(f"relaxation must be 'none' or 'restrained', got {relaxation!r}")
    if engine is None:
        if qm not in ENGINES:
            raise BespokeError(f"unknown QM engine {qm!r}; use one of {', '.join(ENGINES)}")
        engine = ENGINES[qm]()
    if bonds is None:
        bonds = rotatable_bonds(mol)
        if not bonds:
            raise BespokeError(f"{mol.name}: no rotatable bonds (single, not in a ring, a heavy"
                               " atom on each side)")
    bonds = [check_rotatable(mol, b) for b in bonds]  # every bond checked before any work
    out = Path(out).resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    base = cg.ForceField(forcefield)
    current = base
    current_path = forcefield
    report = {"molecule": mol.name, "smiles": mol.identity(), "forcefield": forcefield,
              "qm": {"engine": engine.name, "method": engine.method, "basis": engine.basis},
              "spacing_deg": spacing, "relaxation": relaxation, "bonds": []}
    profiles = []
    for bond in bonds:
        tag = f"{bond[0]}-{bond[1]}"
        label = bond_label(mol, bond)
        log(f"bond {label}")
        times = {}
        t = time.perf_counter()
        frag = fragment(mol, bond, threshold=threshold)
        times["fragment"] = time.perf_counter() - t
        log(f"  fragment: {frag.molecule.n_atoms} atoms ({frag.molecule.identity()}), AM1 WBO"
            f" {frag.wbo_parent:.3f} parent / {frag.wbo_fragment:.3f} fragment")
        t = time.perf_counter()
        prefix = f"t-bespoke-{tag}"
        torsions = bespoke_torsions(frag.molecule, frag.bond, prefix=prefix)
        ids = [b.id for b in torsions]
        terms = work / f"bond-{tag}-terms.offxml"
        write_bespoke_terms(current, frag.molecule, torsions, terms)
        start = work / f"bond-{tag}-start.offxml"
        cg.ForceField(current_path, str(terms)).to_offxml(start)
        start_ff = cg.ForceField(str(start))
        check_coverage(start_ff, frag.molecule, frag.bond, set(ids), "fragment")
        elsewhere = check_coverage(start_ff, mol, bond, set(ids), "parent molecule")
        times["smirks"] = time.perf_counter() - t
        t = time.perf_counter()
        dihedral = central_dihedral(frag.molecule, frag.bond)
        log(f"  scan of dihedral {'-'.join(map(str, dihedral))} (fragment atoms),"
            f" {spacing} deg, {engine.method}")
        scan = torsion_scan(frag.molecule, dihedral, engine, spacing=spacing,
                            cache=out / "cache" / f"bond-{tag}")
        times["scan"] = time.perf_counter() - t
        dataset = work / f"bond-{tag}-scan"
        if dataset.exists():
            shutil.rmtree(dataset)
        record = QMRecord(f"bond-{tag}", "torsion_scan", frag.molecule, scan.positions,
                          scan.energy, np.zeros_like(scan.positions),
                          np.array(["train"] * len(scan.energy)), dihedral, scan.angles_deg,
                          has_forces=False)
        write_qm_dataset([record], dataset, method=engine.method, basis=engine.basis,
                         programs={"engine": engine.name, "torsiondrive": "1.2",
                                   "geometric": "1.1"})
        records = load_qm_dataset(dataset)
        t = time.perf_counter()
        fit_dir = work / f"bond-{tag}-fit"
        if fit_dir.exists():
            shutil.rmtree(fit_dir)
        cfg_path = work / f"bond-{tag}-fit.toml"
        cfg_path.write_text(_fit_config(start, dataset, ids, fit_dir, relaxation=relaxation,
                                        iterations=iterations))
        summary = run_fit(load_config(cfg_path), progress=False)
        times["fit"] = time.perf_counter() - t
        fitted = fit_dir / summary["forcefield"]
        rmse0, prof0 = _profile_rmse(start, records, relaxation)
        rmse1, prof1 = _profile_rmse(fitted, records, relaxation)
        log(f"  RMSE vs QM {rmse0 / 4.184:.3f} -> {rmse1 / 4.184:.3f} kcal/mol"
            f" ({summary['iterations']} iterations, {summary['stopped']})")
        profiles.append((f"bond {label}", prof0[0], prof1[0]))
        report["bonds"].append({
            "bond": list(bond), "label": label,
            "dihedral_fragment": list(dihedral),
            "dihedral_parent": [int(frag.parent_index[a]) for a in dihedral],
            "fragment": {"smiles": frag.molecule.identity(), "atoms": frag.molecule.n_atoms,
                         "wbo_parent": frag.wbo_parent, "wbo_fragment": frag.wbo_fragment,
                         "shells_grown": frag.grown},
            "parameters": [{"id": b.id, "smirks": b.smirks, "torsions": len(b.torsions)}
                           for b in torsions],
            "other_parent_torsions_typed": elsewhere,
            "scan": {"points": len(scan.energy), "optimizations": scan.optimizations,
                     "cached": scan.cached},
            "fit": {"iterations": summary["iterations"], "stopped": summary["stopped"]},
            "rmse_kj_mol": {"before": rmse0, "after": rmse1},
            "rmse_kcal_mol": {"before": rmse0 / 4.184, "after": rmse1 / 4.184},
            "seconds": times,
        })
        current, current_path = cg.ForceField(str(fitted)), str(fitted)
    _write_outputs(out, mol, current, report, profiles)
    return report


def _write_outputs(out: Path, mol, ff, report, profiles) -> None:
    stage = out / ".staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    name = f"{_safe(mol.name)}-bespoke.offxml"
    ff.to_offxml(stage / name)
    report["output"] = name
    (stage / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (stage / "report.md").write_text(_markdown(report))
    _plot(profiles, stage / "profiles.png")
    for item in sorted(stage.iterdir()):
        os.replace(item, out / item.name)
    stage.rmdir()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "molecule"


def _markdown(r) -> str:
    mm = ("single points at the QM geometries" if r["relaxation"] == "none" else
          "relaxed with the dihedral restrained")
    lines = [f"# Bespoke torsions: {r['molecule']}", "",
             f"`{r['smiles']}` from {r['forcefield']}; QM {r['qm']['method']}"
             f" ({r['qm']['engine']}), {r['spacing_deg']} deg scans, MM"
             f" {mm}."
             f" Force field: `{r['output']}`.", "",
             "| bond | fragment (atoms) | AM1 WBO parent / fragment | parameters |"
             " RMSE before | RMSE after | fragment, smirks, scan, fit (s) |",
             "|---|---|---|---|---|---|---|"]
    for b in r["bonds"]:
        s = b["seconds"]
        lines.append(
            f"| {b['label']} | {b['fragment']['atoms']} | {b['fragment']['wbo_parent']:.3f} /"
            f" {b['fragment']['wbo_fragment']:.3f} | {len(b['parameters'])} |"
            f" {b['rmse_kcal_mol']['before']:.3f} | {b['rmse_kcal_mol']['after']:.3f} |"
            f" {s['fragment']:.1f}, {s['smirks']:.1f}, {s['scan']:.1f}, {s['fit']:.1f} |")
    lines += ["", "RMSE: kcal/mol, relative energies of the fragment's scan, each profile"
              " relative to its QM minimum. `profiles.png`: QM, MM before and MM after.", ""]
    for b in r["bonds"]:
        lines.append(f"Bond {b['label']}, bespoke SMIRKS:")
        lines += [f"- `{p['id']}`: `{p['smirks']}`" for p in b["parameters"]]
        lines.append("")
    return "\n".join(lines)


def _plot(profiles, path) -> None:
    """One panel per (title, (angles, QM, MM before), (angles, QM, MM after)), kcal/mol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(profiles), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (label, before, after) in zip(axes[0], profiles, strict=False):
        order = np.argsort(before[0])
        ang = before[0][order]
        ax.plot(ang, before[1][order] / 4.184, "ko-", ms=3, label="QM")
        ax.plot(ang, before[2][order] / 4.184, ":", color="gray", label="MM before")
        ax.plot(ang, after[2][order] / 4.184, "s--", ms=3, color="tab:red", label="MM bespoke")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("dihedral (deg)")
        ax.set_ylabel("relative energy (kcal/mol)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
