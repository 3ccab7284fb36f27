"""Torsion fits with and without restrained MM relaxation, side by side.

``examples/fit/torsions.toml`` (Sage 2.2.1 torsion barriers against the six shipped
B3LYP-D3BJ/6-31G* scans, Levenberg-Marquardt) run twice: with MM single points at the QM
geometries (``relaxation = "none"``) and with the MM structure minimized at every scan point
with the dihedral restrained (``relaxation = "restrained"``, ForceBalance's target, gradient
by implicit differentiation). Each starting and fitted force field is then judged both ways:
RMSE of relative energies (each scan relative to its QM minimum) of MM single points and of
restrained-relaxed MM against QM. Writes the "torsion-relaxation" section of RESULTS.md and
``docs/img/fit_torsion_relaxation.png``. Run: ``python benchmarks/bench_torsion_relaxation.py``
(about 10 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def fit(mode: str, work: Path) -> tuple[dict, float]:
    from chronograd.fit import load_config, run_fit

    text = (ROOT / "examples/fit/torsions.toml").read_text()
    text = text.replace('"../../data/qm"', f'"{ROOT / "data/qm"}"')
    text = text.replace('directory = "../../out/fit-torsions"', f'directory = "{work / "out"}"')
    text = text.replace('kinds = ["torsion_scan"]',
                        f'kinds = ["torsion_scan"]\nrelaxation = "{mode}"')
    (work / "fit.toml").write_text(text)
    t = time.perf_counter()
    summary = run_fit(load_config(work / "fit.toml"), progress=False)
    return summary, time.perf_counter() - t


def judge(offxml: str, records):
    """{mode: (rmse kJ/mol, per-record (angles, qm, mm))} of a force field, both ways."""
    import chronograd as cg
    from chronograd.fit.targets import TorsionProfileTarget

    ff = cg.ForceField(offxml)
    out = {}
    for mode in ("none", "restrained"):
        target = TorsionProfileTarget(ff, records, relaxation=mode, split=None)
        preds = target.predictions(ff.params)
        err = np.concatenate([p["mm_energy"] - p["qm_energy"] for p in preds])
        out[mode] = (float(np.sqrt(np.mean(err ** 2))),
                     [(p["id"], p["angles_deg"], p["qm_energy"], p["mm_energy"]) for p in preds])
    return out


def main() -> None:
    from chronograd.fit.data import load_qm_dataset

    records = [r for r in load_qm_dataset(ROOT / "data/qm") if r.kind == "torsion_scan"]
    judged, times = {}, {}
    judged["Sage 2.2.1"] = judge("openff_unconstrained-2.2.1.offxml", records)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("none", "restrained"):
            work = Path(tmp) / mode
            work.mkdir()
            summary, wall = fit(mode, work)
            label = f"fitted, relaxation = {mode}"
            judged[label] = judge(str(work / "out" / summary["forcefield"]), records)
            times[label] = (wall, summary["iterations"], summary["stopped"])
    lines = ["## Torsion fits with restrained MM relaxation (issue 18;"
             " `benchmarks/bench_torsion_relaxation.py`)", "", machine_line(), "",
             "`examples/fit/torsions.toml` (Sage 2.2.1 torsion k, six B3LYP-D3BJ/6-31G* scans,"
             " Levenberg-Marquardt), fitted with MM single points at the QM geometries and with"
             " the MM structure minimized at every point with the dihedral restrained"
             " (10^4 kJ/mol/rad^2; gradient through the minima by implicit differentiation)."
             " Every force field judged both ways: RMSE of relative energies (kJ/mol, each scan"
             " relative to its QM minimum) over all 72 points.", "",
             "| force field | RMSE, MM single points | RMSE, MM relaxed (restrained) |"
             " fit wall time | iterations (stopped) |", "|---|---|---|---|---|"]
    for label, j in judged.items():
        wall, its, why = times.get(label, (None, None, None))
        lines.append(f"| {label} | {j['none'][0]:.2f} | {j['restrained'][0]:.2f} |"
                     f" {'' if wall is None else f'{wall:.0f} s'} |"
                     f" {'' if its is None else f'{its} ({why})'} |")
    lines += ["", "Judged the way ForceBalance judges a torsion fit (relaxed MM), the"
              " single-point fit and the relaxed fit differ by the relaxation the single points"
              " leave out; `docs/img/fit_torsion_relaxation.png` shows the profiles."]
    write_section("torsion-relaxation", "\n".join(lines))
    plot(judged, ROOT / "docs/img/fit_torsion_relaxation.png")


def plot(judged, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = judged["fitted, relaxation = none"]["none"][1]
    relaxed = judged["fitted, relaxation = restrained"]["restrained"][1]
    start = judged["Sage 2.2.1"]["restrained"][1]
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.6))
    for ax, a, b, c in zip(axes.ravel(), single, relaxed, start, strict=False):
        order = np.argsort(a[1])
        ang = a[1][order]
        ax.plot(ang, a[2][order], "ko-", ms=3, label="QM")
        ax.plot(ang, c[3][order], ":", color="gray", label="Sage 2.2.1, relaxed")
        ax.plot(ang, a[3][order], "s--", ms=3, color="tab:blue",
                label="single-point fit, single points")
        ax.plot(ang, b[3][order], "^-", ms=3, color="tab:red",
                label="relaxed fit, relaxed")
        ax.set_title(a[0], fontsize=8)
        ax.set_xlabel("dihedral (deg)", fontsize=8)
        ax.set_ylabel("kJ/mol", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
