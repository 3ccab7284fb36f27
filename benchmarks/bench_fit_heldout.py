"""Held-out accuracy of a fit: run examples/fit/sage_qm.toml (Sage 2.2.1's bond, angle and
torsion-barrier parameters against the shipped B3LYP-D3BJ/6-31G* data) and compare energy
and force RMSE against QM on the held-out split (fixed in data/qm: every conformer of
1-propanol and p-cresol, and two conformers of each other molecule) before and after, per
molecule and overall. Writes the "fitting-heldout" section of RESULTS.md, and exits 1 if
the fitted force field is not better than Sage 2.2.1 on both held-out RMSEs.
Run: `python benchmarks/bench_fit_heldout.py` (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.fit import load_config, run_fit  # noqa: E402
from chronograd.fit.runner import build_objective  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "fit" / "sage_qm.toml"


def per_molecule(target, theta):
    """{record id: (energy rmse, force rmse, n)} over held-out geometries."""
    out = {}
    for rec in target.records:
        keep = rec.record.split == "test"
        if keep.sum() < 2:
            continue
        u, f = rec.energies_forces(theta)
        qe = rec.record.energy[keep]
        de = (u[keep] - u[keep].mean()) - (qe - qe.mean())
        df = f[keep] - rec.record.forces[keep]
        out[rec.record.id] = (float(np.sqrt(np.mean(de ** 2))),
                              float(np.sqrt(np.mean(df ** 2))), int(keep.sum()))
    return out


def main():
    cfg = load_config(CONFIG)
    out = cfg.resolve(cfg.output["directory"])
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    summary = run_fit(cfg, progress=False)
    wall = time.perf_counter() - t
    _, obj = build_objective(cfg)
    conf = next(tg for tg in obj.targets if tg.name == "conformers")
    fitted = cg.ForceField(out / summary["forcefield"])
    before = per_molecule(conf, obj.theta(np.zeros(obj.n)))
    after = per_molecule(conf, fitted.params)
    m0 = summary["metrics_initial"]["conformers"]
    m1 = summary["metrics_final"]["conformers"]
    rows = []
    for split in ("train", "test"):
        for key, unit in (("energy_rmse", "kJ/mol"), ("force_rmse", "kJ/mol/nm")):
            rows.append(f"| {split} | {key.split('_')[0]} RMSE ({unit}) | {m0[split][key]:.2f}"
                        f" | {m1[split][key]:.2f} |")
    per = [f"| {rid} | {n} | {before[rid][0]:.2f} -> {after[rid][0]:.2f} |"
           f" {before[rid][1]:.0f} -> {after[rid][1]:.0f} |"
           for rid, (_, _, n) in before.items()]
    lines = [machine_line(), "",
             f"`examples/fit/sage_qm.toml`: {obj.n} bond, angle and torsion-barrier entries of"
             f" Sage 2.2.1, L-BFGS, {summary['iterations']} iterations, {wall / 60:.1f} min;"
             f" objective {summary['loss_initial']:.3f} -> {summary['loss_final']:.3f}."
             " Energies are relative to the mean over the split's geometries of each molecule;"
             " Sage 2.2.1 is 'before'.", "",
             "| split | quantity | Sage 2.2.1 | fitted |", "|---|---|---|---|", *rows, "",
             "Held-out geometries per molecule (energy RMSE in kJ/mol, force RMSE in"
             " kJ/mol/nm; with 2 held-out conformers a molecule contributes one energy"
             " difference, so single rows are noisy):", "",
             "| record | held-out geometries | energy | force |", "|---|---|---|---|", *per, ""]
    write_section("fitting-heldout", "## Fitting: held-out QM accuracy\n\n" + "\n".join(lines))
    worse = [k for k in ("energy_rmse", "force_rmse") if not m1["test"][k] < m0["test"][k]]
    if worse:
        raise SystemExit(f"the fit did not lower the held-out {', '.join(worse)} (Sage 2.2.1"
                         f" {[m0['test'][k] for k in worse]}, fitted"
                         f" {[m1['test'][k] for k in worse]})")


if __name__ == "__main__":
    main()
