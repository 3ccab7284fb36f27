"""Learned parameters vs force fields on held-out molecules, and training throughput.

Held out: the 12 test molecules of data/qm_mols (never used in any training or fit here), 8
conformers each, B3LYP-D3BJ/6-31G*. Relative-energy RMSE (each molecule's mean removed) and
force RMSE against QM for:

- Sage 2.2.1 (openff_unconstrained-2.2.1, AM1-BCC charges),
- openff-2.3.0 (openff_unconstrained-2.3.0, NAGL charges),
- Sage 2.2.1 refitted to the same training data (examples/fit/sage_qm_mols.toml: bonds,
  angles and torsion k of the parameters the training molecules use; issue 6's recipe),
- the learned model shipped as ``default`` (data/models/pretrain.toml + finetune.toml).

Also the training throughput of the fine-tuning stage (molecules and conformers per second of
one optax step on the whole padded batch, after compilation) and its memory (XLA's estimate
for the compiled step and this process's peak RSS).

Writes the "learned" section of RESULTS.md. Run: ``python benchmarks/bench_learned.py``
(about 15 minutes on 2 cores, most of it the refit; ``--no-refit`` skips it).
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.fit.data import load_qm_dataset  # noqa: E402
from chronograd.fit.qm_batch import QMGeometries  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "qm_mols"
REFIT = ROOT / "examples" / "fit" / "sage_qm_mols.toml"


def rmse_rows(records, predictions) -> dict:
    """{record id: (energy rmse, force rmse)} and "overall" from (U [G], F [G, N, 3])."""
    out, de_all, df_all = {}, [], []
    for r, (u, f) in zip(records, predictions, strict=True):
        de = (u - u.mean()) - (r.energy - r.energy.mean())
        df = (f - r.forces).ravel()
        out[r.id] = (float(np.sqrt(np.mean(de ** 2))), float(np.sqrt(np.mean(df ** 2))))
        de_all.append(de)
        df_all.append(df)
    out["overall"] = (float(np.sqrt(np.mean(np.concatenate(de_all) ** 2))),
                      float(np.sqrt(np.mean(np.concatenate(df_all) ** 2))))
    return out


def force_field_predictions(ff, records, charges=None):
    systems = [ff.create_system(r.molecule, charges=charges) for r in records]
    batch = QMGeometries(systems, [r.positions for r in records], [r.id for r in records])
    return batch.energies_forces(ff.params)


def learned_predictions(records):
    from chronograd.ml.model_files import load_model
    from chronograd.ml.training import Example, TrainingSet

    model, meta = load_model("default")
    ff = cg.ForceField(meta["forcefield"])
    examples = [Example(r.id, r.molecule, r.positions, r.energy, r.forces) for r in records]
    tset = TrainingSet(ff, model, examples)
    return tset.predictions(tset.params), meta


def refit_force_field(no_refit: bool):
    if no_refit:
        return None, None
    from chronograd.fit import load_config, run_fit

    cfg = load_config(REFIT)
    out = cfg.resolve(cfg.output["directory"])
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    summary = run_fit(cfg, progress=False)
    return cg.ForceField(out / summary["forcefield"]), time.perf_counter() - t


def throughput():
    """(molecules/s, conformers/s, XLA temp+argument MiB, peak RSS MiB) of fine-tuning."""
    from chronograd.ml.model_files import load_model
    from chronograd.ml.training import (
        Example,
        LossWeights,
        TrainingSet,
        adam,
        train_step,
    )

    model, meta = load_model("default")
    ff = cg.ForceField(meta["forcefield"])
    records = [r.subset("train") for r in load_qm_dataset(DATA)]
    records = [r for r in records if len(r.positions)]
    examples = [Example(r.id, r.molecule, r.positions, r.energy, r.forces) for r in records]
    tset = TrainingSet(ff, model, examples)
    trainable = {"model": tset.params["model"]}
    fixed = {"forcefield": tset.params["forcefield"]}
    opt = adam(1e-3)
    state = opt.init(trainable)
    structures, data = tset.arrays()
    options = {"counts": tuple(sorted(tset.counts.items())), "weights": LossWeights(),
               "qm": True, "optimizer": opt}
    compiled = train_step.lower(trainable, state, fixed, structures, data, **options).compile()
    memory = compiled.memory_analysis()
    mib = None
    if memory is not None:
        mib = (memory.temp_size_in_bytes + memory.argument_size_in_bytes
               + memory.output_size_in_bytes) / 2 ** 20
    trainable, state, _ = train_step(trainable, state, fixed, structures, data, **options)
    jax.block_until_ready(trainable)
    steps = 5
    t = time.perf_counter()
    for _ in range(steps):
        trainable, state, _ = train_step(trainable, state, fixed, structures, data, **options)
    jax.block_until_ready(trainable)
    per_step = (time.perf_counter() - t) / steps
    n_conf = sum(len(e.positions) for e in examples)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return len(examples) / per_step, n_conf / per_step, per_step, mib, rss, len(examples)


def main(argv=None):
    no_refit = "--no-refit" in (argv or sys.argv[1:])
    records = [r.subset("test") for r in load_qm_dataset(DATA)]
    records = [r for r in records if len(r.positions)]
    columns = {}
    sage = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    columns["Sage 2.2.1"] = rmse_rows(records, force_field_predictions(sage, records, "am1bcc"))
    new = cg.ForceField("openff_unconstrained-2.3.0.offxml")
    columns["openff-2.3.0"] = rmse_rows(records, force_field_predictions(new, records))
    refit, refit_wall = refit_force_field(no_refit)
    if refit is not None:
        columns["Sage 2.2.1 refitted"] = rmse_rows(
            records, force_field_predictions(refit, records, "am1bcc"))
    predictions, meta = learned_predictions(records)
    columns["learned (default)"] = rmse_rows(records, predictions)
    mol_s, conf_s, step_s, mib, rss, n_train = throughput()

    names = list(columns)
    n_conf = sum(len(r.positions) for r in records)
    lines = [machine_line(), "",
             f"Held out: {len(records)} molecules of data/qm_mols ({n_conf}"
             " conformers), B3LYP-D3BJ/6-31G*; relative-energy RMSE (kJ/mol) / force RMSE"
             " (kJ/mol/nm).", "",
             "| molecule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for rid in [r.id for r in records] + ["overall"]:
        cells = [f"{columns[n][rid][0]:.2f} / {columns[n][rid][1]:.0f}" for n in names]
        label = f"**{rid}**" if rid == "overall" else rid
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"Learned model: {meta.get('name')} ({meta['forcefield']} for vdW).",
              f"Refit wall time: {refit_wall:.0f} s." if refit_wall else "Refit skipped.",
              "", f"Fine-tuning throughput: {n_train} molecules per optax step (whole padded"
              f" batch, energies + forces + charges, second-order gradients): {step_s:.2f} s"
              f" per step = {mol_s:.1f} molecules/s, {conf_s:.0f} conformers/s; XLA memory"
              f" of the compiled step {mib:.0f} MiB; peak RSS {rss:.0f} MiB."]
    write_section("learned", "\n".join(lines))
    print("\n".join(lines))
    learned = columns["learned (default)"]["overall"]
    base = columns["Sage 2.2.1"]["overall"]
    return 0 if learned[0] < base[0] and learned[1] < base[1] else 1


if __name__ == "__main__":
    sys.exit(main())
