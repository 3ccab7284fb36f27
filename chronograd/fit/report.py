"""The fit report: report.md with PNG plots (loss curve, QM-vs-MM parity before and after,
torsion-profile overlays) and per-target RMSE on train and test."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(folder: Path, cfg, obj, log, summary, phi0, phi) -> None:
    plt = _plt()
    images = []
    if log:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        it = [e["iteration"] for e in log]
        if it[0] != 0:  # logs written before iteration 0 was logged
            it, losses = [0] + it, [summary["loss_initial"]] + [e["loss"] for e in log]
        else:
            losses = [e["loss"] for e in log]
        ax.semilogy(it, losses, "k-", label="total")
        it = [e["iteration"] for e in log]
        for name in log[0]["targets"]:
            ax.semilogy(it, [e["targets"][name] for e in log], label=name, lw=1)
        ax.set_xlabel("iteration")
        ax.set_ylabel("objective")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "loss.png", dpi=110)
        plt.close(fig)
        images.append(("Objective per iteration", "loss.png",
                       "The objective (targets plus prior, black) and each target's part after"
                       " every iteration; iteration 0 is the starting force field. The fit"
                       f" stopped: {summary.get('stopped', 'iteration limit')}."))
    preds = {}
    for label, p in (("before", phi0), ("after", phi)):
        theta = obj.theta(np.asarray(p))
        preds[label] = [(t, t.predictions(theta)) for t in obj.targets]
    images += _parity(plt, folder, preds)
    images += _torsions(plt, folder, preds)

    lines = [f"# Fit report: {cfg.path.name}", "",
             f"Force field: `{cfg.forcefield['file']}` -> `{summary['forcefield']}`; optimizer"
             f" {summary['optimizer']}, {summary['iterations']} iterations (stopped:"
             f" {summary.get('stopped', 'iteration limit')}); objective"
             f" {summary['loss_initial']:.6g} -> {summary['loss_final']:.6g}.", "",
             "## Targets, before and after", "",
             "Against QM: relative energies in kJ/mol, forces in kJ/mol/nm, bond lengths in"
             " nm, angles in degrees (RMSE over the split's geometries). Liquids: density in"
             " g/mL and H_vap in kJ/mol, estimated from the fit's sample (its stored liquid"
             " frames).", "",
             "| target | split | geometries (liquids: frames) | quantity | before | after |",
             "|---|---|---|---|---|---|"]
    for name, split, n, key, a, b in metric_rows(summary):
        lines.append(f"| {name} | {split} | {n} | {key} | {a:.4g} | {b:.4g} |")
    for name, v in summary.get("validation", {}).items():
        m0, m1 = summary["metrics_initial"][name]["all"], summary["metrics_final"][name]["all"]
        lines += ["", f"## {name}: predicted and re-simulated", "",
                  "Predicted: the fit's estimate (reweighted from its sample); re-simulated: a"
                  f" fresh simulation of {v['after']['production']} liquid steps at the same"
                  " parameters. Values ± standard errors.", "",
                  "| property | experiment | before, predicted | before, re-simulated |"
                  " after, predicted | after, re-simulated |", "|---|---|---|---|---|---|"]
        for k in ("density", "hvap"):
            if k not in v["after"]:
                continue
            lines.append(
                f"| {k} | {m1[f'{k}_experiment']:.5g} |"
                f" {m0[k]:.5g} ± {m0[f'{k}_std_error']:.2g} |"
                f" {v['before'][k][0]:.5g} ± {v['before'][k][1]:.2g} |"
                f" {m1[k]:.5g} ± {m1[f'{k}_std_error']:.2g} |"
                f" {v['after'][k][0]:.5g} ± {v['after'][k][1]:.2g} |")
        for when in ("before", "after"):
            if "warning" in v[when]:
                lines += ["", f"**Warning ({name}, validation {when}):** {v[when]['warning']}"]
        refs = [f"{k}: {m1[f'{k}_reference']}" for k in ("density", "hvap")
                if f"{k}_reference" in m1]
        if refs:
            lines += ["", "Experimental values: " + "; ".join(refs) + "."]
    for when in ("metrics_initial", "metrics_final"):
        for name, splits in summary[when].items():
            for values in splits.values():
                if "warning" in values:
                    lines += ["", f"**Warning ({name}, {when.split('_')[1]}):**"
                              f" {values['warning']}"]
    lines += ["", "## Parameters (internal units: nm, rad, kJ/mol)", "",
              "| parameter | initial | final | change |", "|---|---|---|---|"]
    for p in summary["parameters"]:
        lines.append(f"| {p['label']} | {p['initial']:.6g} | {p['final']:.6g} |"
                     f" {p['final'] - p['initial']:+.4g} |")
    for title, name, caption in images:
        lines += ["", f"## {title}", "", f"![{title}]({name})", "", f"*{caption}*"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")


def metric_rows(summary):
    """(target, split, n_geometries, quantity, before, after) for every metric."""
    for name, m0 in summary["metrics_initial"].items():
        m1 = summary["metrics_final"][name]
        for split, values in m0.items():
            for key, a in values.items():
                # no forces: no force RMSE; text (a sampling warning) is not a metric
                if key != "n_geometries" and isinstance(a, (int, float)):
                    yield name, split, values["n_geometries"], key, a, m1[split][key]


def _parity(plt, folder, preds):
    rows = []
    for label in ("before", "after"):
        for _t, recs in preds[label]:
            for r in recs:
                for split in ("train", "test"):
                    keep = r["split"] == split
                    if keep.any():
                        forces = r.get("has_forces", True)  # energy-only: no force points
                        qf = r["qm_forces"][keep].ravel() if forces else np.zeros(0)
                        mf = r["mm_forces"][keep].ravel() if forces else np.zeros(0)
                        rows.append((label, split, r["qm_energy"][keep], r["mm_energy"][keep],
                                     qf, mf))
    if not rows:
        return []
    fig, axes = plt.subplots(2, 2, figsize=(8, 7))
    for col, label in enumerate(("before", "after")):
        for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
            sel = [r for r in rows if r[0] == label and r[1] == split]
            if not sel:
                continue
            qe, me = np.concatenate([s[2] for s in sel]), np.concatenate([s[3] for s in sel])
            qf, mf = np.concatenate([s[4] for s in sel]), np.concatenate([s[5] for s in sel])
            axes[0, col].plot(qe, me, ".", ms=3, color=color, label=split)
            axes[1, col].plot(qf, mf, ".", ms=1, alpha=0.4, color=color, label=split)
        for row, what in ((0, "relative energy (kJ/mol)"), (1, "force component (kJ/mol/nm)")):
            ax = axes[row, col]
            lo, hi = ax.get_xlim()
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_xlabel(f"QM {what}")
            ax.set_ylabel(f"MM {what}")
            ax.set_title(label)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "parity.png", dpi=110)
    plt.close(fig)
    return [("QM vs MM, before and after", "parity.png",
             "Top: relative energies of every geometry, QM (x) against MM (y), before (left)"
             " and after (right) the fit; each record's energies are taken relative to its"
             " mean (or its QM minimum), as in the target. Bottom: every Cartesian force"
             " component of every atom at every geometry, QM against MM (kJ/mol/nm); points"
             " on the dashed diagonal agree. At geometries that were relaxed with a force"
             " field (MM-relaxed scans) the QM forces hold the residual relaxation the MM"
             " surface does not have, so a wide cloud in the force panels is expected there;"
             " energy-only records add no force points.")]


def _torsions(plt, folder, preds):
    scans = {}
    for label in ("before", "after"):
        for _t, recs in preds[label]:
            for r in recs:
                if r["angles_deg"] is not None:
                    scans.setdefault(r["id"], {})[label] = r
    if not scans:
        return []
    n = len(scans)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax, (rid, d) in zip(axes.ravel(), scans.items(), strict=False):
        r0 = d["before"]
        order = np.argsort(r0["angles_deg"])
        ang = r0["angles_deg"][order]
        ax.plot(ang, r0["qm_energy"][order], "ko-", ms=3, label="QM")
        ax.plot(ang, r0["mm_energy"][order], "s--", ms=3, color="tab:gray", label="initial")
        ax.plot(ang, d["after"]["mm_energy"][order], "^-", ms=3, color="tab:red",
                label="fitted")
        ax.set_title(rid, fontsize=9)
        ax.set_xlabel("dihedral (deg)")
        ax.set_ylabel("kJ/mol")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "torsions.png", dpi=110)
    plt.close(fig)
    return [("Torsion profiles", "torsions.png",
             "Relative energy along each scanned dihedral: QM (black), the starting force"
             " field (grey) and the fitted one (red), each relative to its own reference as"
             " in the target (kJ/mol).")]
