"""Learned potentials trained by force matching, on held-out molecules; NVE stability of the
trained potentials over 100 ps; and the cost of the PyTorch bridge against pure JAX.

Held out: the 12 test molecules of data/qm_mols (never used in any training or fit here), 8
conformers each, B3LYP-D3BJ/6-31G*. Relative-energy RMSE (each molecule's mean removed) and
force RMSE against QM, side by side:

- Sage 2.2.1 (openff_unconstrained-2.2.1, AM1-BCC charges),
- Sage 2.2.1 refitted to the same training data (examples/fit/sage_qm_mols.toml; reused from
  ``out/fit-sage-qm-mols`` when bench_learned.py already ran it, else fitted here),
- the learned parameter model shipped as ``default`` (issue 15),
- SchNet and PaiNN potentials trained alone (data/models/potential_schnet.toml,
  potential_painn.toml),
- a PaiNN Δ-correction on Sage 2.2.1 (data/models/potential_delta.toml; θ fixed).

The potentials are trained here unless their output folders already hold a model
(``--retrain`` forces it). Then 100 ps of NVE (velocity Verlet, 0.5 fs, from a minimum at
300 K) with each trained potential on a held-out molecule: energy drift (linear fit of the
total energy) and the largest excursion. Finally energy + forces of a Sage system through
``chronograd.torch.energy_module`` (forward + backward) against one jitted
``jax.value_and_grad`` call, both after compilation.

Writes the "potentials" section of RESULTS.md. Run: ``python benchmarks/bench_potentials.py``
(about 40 minutes on 2 cores when it trains; 10 when the models exist).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402
from bench_learned import (  # noqa: E402
    force_field_predictions,
    learned_predictions,
    refit_force_field,
    rmse_rows,
)

import chronograd as cg  # noqa: E402
from chronograd.fit.data import load_qm_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "qm_mols"
MODELS = ROOT / "data" / "models"
POTENTIALS = {"SchNet alone": "potential_schnet.toml", "PaiNN alone": "potential_painn.toml",
              "Δ PaiNN on Sage 2.2.1": "potential_delta.toml"}


def trained_potential(config_name: str, retrain: bool):
    """(model directory, training summary) of a potential config, training it if needed."""
    from chronograd.ml.train_config import load_train_config
    from chronograd.ml.train_runner import run_training

    cfg = load_train_config(MODELS / config_name)
    out = cfg.resolve(cfg.output["directory"])
    if retrain or not (out / "model" / "model.json").is_file():
        run_training(cfg, progress=False)
    return out / "model", json.loads((out / "summary.json").read_text())


def potential_predictions(model_dir, records):
    from chronograd.ml.model_files import load_model
    from chronograd.ml.training import Example, TrainingSet

    model, meta = load_model(model_dir, kind="potential")
    ff = cg.ForceField(meta["forcefield"]) if meta["forcefield"] else None
    examples = [Example(r.id, r.molecule, r.positions, r.energy, r.forces) for r in records]
    tset = TrainingSet(ff, model, examples)
    return tset.predictions(tset.params), model, ff


def refit():
    summary = ROOT / "out" / "fit-sage-qm-mols" / "summary.json"
    if summary.is_file():
        name = json.loads(summary.read_text())["forcefield"]
        return cg.ForceField(summary.parent / name), None
    return refit_force_field(False)


def nve_run(model, ff, record, *, ps=100.0, dt=0.0005):
    """(drift kJ/mol/ns, largest |E - E0| kJ/mol, mean kinetic kJ/mol, wall s, ns/day)."""
    import chronograd.dynamics as dyn
    from chronograd.minimize import minimize
    from chronograd.ml.potential_term import potential_system

    system = potential_system(record.molecule, model, ff=ff)
    x0 = minimize(system, record.positions[0], tolerance=1.0).positions
    integ = dyn.velocity_verlet(system, timestep=dt)
    state = integ.init(x0, key=jax.random.key(0), temperature=300.0)
    n_steps, chunk = int(round(ps / dt)), 1000
    masses = jnp.asarray(system.masses)[:, None]
    times, totals, kinetic = [], [], []
    state = cg.simulate(integ, state, chunk)  # compile
    t = time.perf_counter()
    for k in range(n_steps // chunk - 1):
        state = cg.simulate(integ, state, chunk)
        ke = 0.5 * float(jnp.sum(masses * state.velocities ** 2))
        totals.append(float(state.potential_energy) + ke)
        kinetic.append(ke)
        times.append((k + 2) * chunk * dt)
    wall = time.perf_counter() - t
    if not np.all(np.isfinite(totals)):
        return float("nan"), float("nan"), float("nan"), wall, 0.0
    slope = np.polyfit(np.asarray(times) / 1000.0, totals, 1)[0]  # per ns
    steps_per_s = (n_steps - chunk) / wall
    return (float(slope), float(np.max(np.abs(np.asarray(totals) - totals[0]))),
            float(np.mean(kinetic)), wall, steps_per_s * dt * 86400 / 1000)


def bridge_overhead(n_waters=216, repeats=50):
    """(JAX ms, torch ms, n atoms) per energy + forces of a Sage water box."""
    import torch

    from chronograd.topology import Molecule
    from chronograd.topology.boxes import liquid_box
    from chronograd.torch import energy_module

    ff = cg.ForceField("openff-2.2.1.offxml")
    water = Molecule.from_smiles("O", name="water")
    mols, pos, box = liquid_box(water, n_waters, density_g_ml=0.99)
    system = ff.create_system(mols, box=box)
    U = system.energy_fn()
    vg = jax.jit(jax.value_and_grad(U))
    x, b = jnp.asarray(pos), jnp.asarray(box)
    jax.block_until_ready(vg(x, b, system.params))
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(vg(x, b, system.params))
    t_jax = (time.perf_counter() - t) / repeats
    module = energy_module(system)
    for p in module.parameters():
        p.requires_grad_(False)
    xt = torch.tensor(pos, requires_grad=True)
    bt = torch.tensor(box)

    def once():
        xt.grad = None
        e = module(xt, bt)
        e.backward()
        return e

    once()
    t = time.perf_counter()
    for _ in range(repeats):
        once()
    t_torch = (time.perf_counter() - t) / repeats
    return 1e3 * t_jax, 1e3 * t_torch, system.n_atoms


def main(argv=None):
    argv = argv if argv is not None else sys.argv[1:]
    retrain = "--retrain" in argv
    records = [r.subset("test") for r in load_qm_dataset(DATA)]
    records = [r for r in records if len(r.positions)]
    columns, trained = {}, {}
    sage = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    columns["Sage 2.2.1"] = rmse_rows(records, force_field_predictions(sage, records, "am1bcc"))
    refitted, _ = refit()
    columns["Sage 2.2.1 refitted"] = rmse_rows(
        records, force_field_predictions(refitted, records, "am1bcc"))
    predictions, _ = learned_predictions(records)
    columns["learned parameters (default)"] = rmse_rows(records, predictions)
    for label, config in POTENTIALS.items():
        model_dir, summary = trained_potential(config, retrain)
        predictions, model, ff = potential_predictions(model_dir, records)
        columns[label] = rmse_rows(records, predictions)
        trained[label] = (model, ff, summary)

    names = list(columns)
    n_conf = sum(len(r.positions) for r in records)
    lines = [machine_line(), "",
             f"Held out: {len(records)} molecules of data/qm_mols ({n_conf} conformers),"
             " B3LYP-D3BJ/6-31G*; relative-energy RMSE (kJ/mol) / force RMSE (kJ/mol/nm).", "",
             "| molecule | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for rid in [r.id for r in records] + ["overall"]:
        cells = [f"{columns[n][rid][0]:.2f} / {columns[n][rid][1]:.0f}" for n in names]
        label = f"**{rid}**" if rid == "overall" else rid
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| potential | architecture | weights | epochs (early stop) | training wall"
              " s | train energy / force RMSE |", "|---|---|---|---|---|---|"]
    for label, (model, _, summary) in trained.items():
        stage = summary["stages"][-1]
        n_w = sum(int(np.size(a)) for a in jax.tree.leaves(model.weights))
        tr = stage["metrics"]["train"]
        lines.append(f"| {label} | {model.config.architecture} (hidden {model.config.hidden},"
                     f" {model.config.layers} blocks, cutoff {model.config.cutoff} nm) |"
                     f" {n_w:,} | {stage['epochs']} ({stage['stopped_early']}) |"
                     f" {summary['wall_s']:.0f} | {tr['energy_rmse']:.2f} /"
                     f" {tr['forces_rmse']:.0f} |")
    record = records[0]
    lines += ["", f"100 ps NVE (velocity Verlet, 0.5 fs, 300 K start from a minimum) of"
              f" {record.id} ({record.molecule.n_atoms} atoms), total energy every 0.5 ps:",
              "", "| potential | drift kJ/mol/ns | largest excursion kJ/mol | mean kinetic"
              " kJ/mol | ns/day |", "|---|---|---|---|---|"]
    for label, (model, ff, _) in trained.items():
        drift, excursion, ke, _, nsday = nve_run(model, ff, record)
        lines.append(f"| {label} | {drift:.3g} | {excursion:.3g} | {ke:.1f} | {nsday:.1f} |")
    t_jax, t_torch, n_atoms = bridge_overhead()
    lines += ["", f"PyTorch bridge: energy + forces of Sage 2.2.1 TIP3P water ({n_atoms} atoms,"
              f" PME): jitted jax.value_and_grad {t_jax:.2f} ms, chronograd.torch energy_module"
              f" forward + backward {t_torch:.2f} ms (x{t_torch / t_jax:.2f})."]
    write_section("potentials", "\n".join(lines))
    print("\n".join(lines))
    delta = columns["Δ PaiNN on Sage 2.2.1"]["overall"]
    return 0 if delta[1] < columns["Sage 2.2.1"]["overall"][1] else 1


if __name__ == "__main__":
    sys.exit(main())
