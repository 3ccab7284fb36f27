"""The training report: learning curves, held-out parity plots and an RMSE table (report.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chronograd.interop.files import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def held_out_predictions(ff, model, examples, freeze=()):
    """(QM, model) relative energies (kJ/mol) and force components (kJ/mol/nm) of every
    held-out geometry (each energy relative to its molecule's mean), from one batch."""
    from chronograd.ml.training import TrainingSet

    tset = TrainingSet(ff, model, examples, freeze=freeze)
    e_qm, e_mm, f_qm, f_mm = [], [], [], []
    for ex, (e, f) in zip(examples, tset.predictions(tset.params), strict=True):
        e_mm.append(e - e.mean())
        e_qm.append(ex.energy - ex.energy.mean())
        f_mm.append(f.ravel())
        f_qm.append(ex.forces.ravel())
    return (np.concatenate(e_qm), np.concatenate(e_mm), np.concatenate(f_qm),
            np.concatenate(f_mm))


def write_training_report(out: Path, log, summary, ff, model, test, freeze=()) -> None:
    plt = _plt()
    lines = ["# Training report", ""]
    stages = sorted({e["stage"] for e in log}, key=[e["stage"] for e in log].index)
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(5 * max(1, len(stages)), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], stages, strict=False):
        entries = [e for e in log if e["stage"] == name]
        ax.semilogy([e["epoch"] for e in entries], [e["train_loss"] for e in entries],
                    label="train")
        if any("validation_loss" in e for e in entries):
            ax.semilogy([e["epoch"] for e in entries if "validation_loss" in e],
                        [e["validation_loss"] for e in entries if "validation_loss" in e],
                        label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png", dpi=110)
    plt.close(fig)
    lines += ["![learning curves](learning_curve.png)", "",
              "| stage | epochs | early stop | train molecules | validation molecules |",
              "|---|---|---|---|---|"]
    for s in summary["stages"]:
        lines.append(f"| {s['name']} | {s['epochs']} | {s['stopped_early']} | {s['n_train']}"
                     f" | {s['n_validation']} |")
    lines.append("")
    for s in summary["stages"]:
        for split, metrics in s["metrics"].items():
            text = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            lines.append(f"- {s['name']} [{split}]: {text}")
    if test:
        e_qm, e_mm, f_qm, f_mm = held_out_predictions(ff, model, test, freeze)
        for kind, (a, b), unit in (("energy", (e_qm, e_mm), "kJ/mol"),
                                   ("forces", (f_qm, f_mm), "kJ/mol/nm")):
            fig, ax = plt.subplots(figsize=(4.2, 4.2))
            ax.scatter(a, b, s=4, alpha=0.5)
            lim = [min(a.min(), b.min()), max(a.max(), b.max())]
            ax.plot(lim, lim, "k--", lw=0.8)
            rmse = float(np.sqrt(np.mean((a - b) ** 2)))
            ax.set_xlabel(f"QM {kind} ({unit})")
            ax.set_ylabel(f"model {kind} ({unit})")
            ax.set_title(f"held out: RMSE {rmse:.3g} {unit}")
            fig.tight_layout()
            fig.savefig(out / f"parity_{kind}.png", dpi=110)
            plt.close(fig)
            lines.append(f"\n![held-out {kind} parity](parity_{kind}.png)")
        lines += ["", f"Held-out molecules: {len(test)} (never used in training).", ""]
    atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
