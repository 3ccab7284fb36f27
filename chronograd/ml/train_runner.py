"""The training loop behind ``chronograd fit`` for a learned model: stages (pre-training on
force-field labels, fine-tuning on QM), optax Adam on the whole padded batch, a validation
split by molecule with early stopping, checkpoints that ``--resume`` continues, a progress bar,
and a report (learning curves, held-out parity plots, RMSE table).

Outputs in ``[output] directory``: ``model/`` (the best weights, see ``model_files``),
``log.jsonl`` (one line per epoch), ``summary.json``, ``report.md`` with ``learning_curve.png``
and ``parity_energy.png`` / ``parity_forces.png``, ``checkpoint.npz``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from chronograd.errors import InputError
from chronograd.fit.checkpoint import decode, encode
from chronograd.interop.archive import read_archive, write_archive
from chronograd.interop.files import atomic_write
from chronograd.ml.learned_system import LearnedModel, learned_system
from chronograd.ml.model_files import check_forcefield, load_model, save_model
from chronograd.ml.predictor import PredictorConfig
from chronograd.ml.training import (
    Example,
    LossWeights,
    TrainingSet,
    adam,
    label_targets,
    loss_value,
    train_step,
)

CHECKPOINT = "checkpoint.npz"
FORMAT, VERSION = "chronograd.train-checkpoint", 1
NAGL_MODEL = ("openff-gnn-am1bcc-1.0.0.pt",
              "7981e7f5b0b1e424c9e10a40d9e7606d96dcd3dd2b095cb4eeff6829f92238ee")


def initial_model(cfg):
    """The model a config starts from: a LearnedModel, or a PotentialModel (kind potential)."""
    m = cfg.model
    init = m.get("init", "new")
    if m.get("kind") == "potential":
        from chronograd.ml.potential_term import PotentialModel
        from chronograd.ml.train_config import potential_config

        if init == "new":
            return PotentialModel.initialize(potential_config(m),
                                             name=m.get("name", "potential"))
        model, meta = load_model(cfg.resolve(init), kind="potential")
        if (meta["forcefield"] is None) != ("forcefield" not in m) or (
                meta["forcefield"] is not None
                and Path(meta["forcefield"]).name != Path(m["forcefield"]).name):
            raise cfg.error("model", "forcefield", None, f"the potential in {init} was trained"
                            f" on {meta['forcefield'] or 'no force field'}; use the same base")
        return PotentialModel(model.config, model.network, m.get("name", model.name))
    if init == "new":
        keys = ("hidden", "layers", "readout", "seed")
        config = PredictorConfig(**{k: m[k] for k in keys if k in m})
        return LearnedModel.initialize(config, name=m.get("name", "model"))
    model, meta = load_model(init if init == "default" else cfg.resolve(init))
    try:
        check_forcefield(meta, m["forcefield"])
    except InputError as err:
        raise cfg.error("model", "forcefield", None, str(err)) from None
    return LearnedModel(model.config, model.predictor, m.get("name", model.name))


def _nagl():
    from chronograd.ml.nagl import load_nagl_model

    return load_nagl_model(*NAGL_MODEL)


def stage_examples(cfg, index: int, ff, model) -> tuple[list, list, list]:
    """(train, validation, held-out test) examples of stage ``index``."""
    stage = cfg.stages[index]
    target = stage.get("charge_target", "nagl")
    nagl = _nagl() if target == "nagl" and stage.get("charge_weight", 0) > 0 else None
    if "molecules" in stage:
        from chronograd.topology import Molecule

        path = cfg.resolve(stage["molecules"])
        if not path.is_file():
            raise cfg.error("stages", "molecules", index, f"{path} does not exist")
        examples = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            smiles, *name = line.split()
            try:
                mol = Molecule.from_smiles(smiles, name=name[0] if name else smiles)
                system = ff.create_system(mol, charges="gasteiger")
                labels = label_targets(system, learned_system(ff, mol, model), mol)
                charges = nagl.charges(mol) if nagl is not None else None
            except InputError as err:
                raise InputError(f"{path}, line {n}: {err}") from None
            examples.append(Example(mol.name, mol, charges=charges, labels=labels))
        test = []
    else:
        from chronograd.fit.data import load_qm_dataset

        records = load_qm_dataset(cfg.resolve(stage["dataset"]), records=stage.get("records"))
        split = stage.get("split", "train")
        examples, test = [], []
        for r in records:
            if not r.has_forces and stage.get("force_weight", 0.0):
                raise cfg.error("stages", index=index, message=(
                    f"record {r.id!r} has energies only (no gradients) but force_weight is"
                    f" {stage['force_weight']}; set force_weight = 0 or drop the record"))
            charges = nagl.charges(r.molecule) if nagl is not None else None
            for which, into in ((split, examples), ("test", test)):
                sub = r.subset(which)
                if len(sub.positions):
                    into.append(Example(r.id, r.molecule, sub.positions, sub.energy,
                                        sub.forces, charges=charges))
    examples = examples[: stage.get("max_molecules", len(examples))]
    fraction = stage.get("validation_fraction", 0.0)
    order = np.random.default_rng(20261130 + index).permutation(len(examples))
    n_val = int(math.ceil(fraction * len(examples))) if fraction > 0 else 0
    val = [examples[k] for k in sorted(order[:n_val])]
    train = [examples[k] for k in sorted(order[n_val:])]
    if not train:
        raise cfg.error("stages", index=index, message="no training molecules left")
    return train, val, test


def _weights(stage) -> LossWeights:
    return LossWeights(energy=stage.get("energy_weight", 0.0),
                       forces=stage.get("force_weight", 0.0),
                       charges=stage.get("charge_weight", 0.0),
                       labels=stage.get("label_weight", 0.0))


def run_training(cfg, *, resume: bool = False, stop_after: int | None = None,
                 progress: bool = True) -> dict:
    """Run (or continue) every stage; returns the summary (also written to summary.json)."""
    from chronograd.forcefield import ForceField

    out = cfg.resolve(cfg.output["directory"])
    if not out.parent.is_dir():
        raise cfg.error("output", "directory", None, f"the folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    ckpt = out / CHECKPOINT
    ff = ForceField(cfg.model["forcefield"]) if "forcefield" in cfg.model else None
    model = initial_model(cfg)
    freeze = tuple(cfg.model.get("freeze", []))
    train_ff = bool(cfg.model.get("train_forcefield", False))
    state = {"stage": 0, "epoch": 0, "best_val": None, "bad": 0, "log": [], "wall_s": 0.0}
    trainable = {model.params_key: model.weights}
    if train_ff:
        trainable[model.base_key] = ff.params
    blob = None
    if resume:
        if not ckpt.is_file():
            raise InputError(f"{ckpt}: no checkpoint to resume from; run without --resume")
        header, arrays = read_archive(ckpt, format=FORMAT, version=VERSION,
                                      what="training checkpoint")
        if header.get("config_sha256") != cfg.sha256:
            raise InputError(f"{cfg.path}: the config changed since {ckpt} was written; resume"
                             " with the same config or start again")
        blob = decode(header.get("state"), arrays, {}, str(ckpt))
        if not isinstance(blob, dict) or not all(k in blob for k in (*state, "trainable",
                                                                      "best", "opt_state")):
            raise InputError(f"{ckpt}: the checkpoint holds no training state")
        if header.get("model", _describe(model)) != _describe(model):
            raise InputError(f"{ckpt}: the checkpoint was written for {header['model']}, but"
                             f" the config trains {_describe(model)}; start again without"
                             " --resume")
        trainable = _like(blob["trainable"], trainable, ckpt)
        model = model.with_weights(trainable[model.params_key])
        state = {k: blob[k] for k in state}
    epochs_run, start = 0, time.perf_counter()
    summary_stages = []
    test_examples = []
    for si in range(state["stage"], len(cfg.stages)):
        stage = cfg.stages[si]
        train, val, test = stage_examples(cfg, si, ff, model)
        test_examples = test or test_examples
        buckets = stage.get("n_buckets", 2)
        tset = TrainingSet(ff, model, train, n_buckets=buckets, freeze=freeze)
        vset = TrainingSet(ff, model, val, n_buckets=buckets, freeze=freeze) if val else None
        params = tset.params
        fixed = {k: v for k, v in params.items() if k not in trainable}
        weights = _weights(stage)
        opt = adam(float(stage.get("learning_rate", 1e-3)))
        opt_state = opt.init(trainable)
        structures, data = tset.arrays()
        options = {"counts": tuple(sorted(tset.counts.items())), "weights": weights,
                   "qm": tset.qm}
        best = trainable
        if blob is not None:  # continue this stage where the checkpoint left it
            best = _like(blob["best"], trainable, ckpt)
            opt_state = _like(blob["opt_state"], opt_state, ckpt)
            blob = None

        epochs = stage.get("epochs", 100)
        patience = stage.get("patience", epochs)
        bar = _Progress(progress, stage["name"], epochs, state["epoch"])
        stopped_early = False
        while state["epoch"] < epochs:
            trainable, opt_state, value = train_step(trainable, opt_state, fixed, structures,
                                                     data, optimizer=opt, **options)
            entry = {"stage": stage["name"], "epoch": state["epoch"] + 1,
                     "train_loss": float(value)}
            if vset is not None:
                v = float(loss_value(trainable, fixed, *vset.arrays(), tuple(sorted(
                    vset.counts.items())), weights, vset.qm))
                entry["validation_loss"] = v
                if state["best_val"] is None or v < state["best_val"]:
                    state["best_val"], state["bad"], best = v, 0, trainable
                else:
                    state["bad"] += 1
            else:
                best = trainable
            state["log"].append(entry)
            state["epoch"] += 1
            epochs_run += 1
            bar.advance(entry)
            every = cfg.output.get("checkpoint_every", 10)
            done = state["bad"] >= patience
            halt = stop_after is not None and epochs_run >= stop_after
            if state["epoch"] % every == 0 or done or halt or state["epoch"] == epochs:
                state["wall_s"] += time.perf_counter() - start
                start = time.perf_counter()
                _save(ckpt, cfg, si, state, trainable, best, opt_state, model)
            if done:
                stopped_early = True
                break
            if halt:
                bar.close()
                return {"finished": False, "stage": stage["name"], "epoch": state["epoch"],
                        "loss": float(value), "output": str(out)}
        bar.close()
        trainable = best
        model = model.with_weights(trainable[model.params_key])
        metrics = {"train": tset.metrics({**fixed, **trainable})}
        if vset is not None:
            metrics["validation"] = vset.metrics({**fixed, **trainable})
        summary_stages.append({"name": stage["name"], "epochs": state["epoch"],
                               "stopped_early": stopped_early, "n_train": len(train),
                               "n_validation": len(val), "metrics": metrics})
        state.update({"stage": si + 1, "epoch": 0, "best_val": None, "bad": 0})
        state["wall_s"] += time.perf_counter() - start
        start = time.perf_counter()
        _save(ckpt, cfg, si + 1, state, trainable, trainable, opt_state, model)
    save_model(model, out / "model", forcefield=cfg.model.get("forcefield"),
               notes={"config": cfg.path.name, "stages": [s["name"] for s in cfg.stages]})
    summary = {"finished": True, "output": str(out), "stages": summary_stages,
               "wall_s": state["wall_s"]}
    if test_examples:
        summary["test"] = evaluate(ff, model, test_examples, freeze=freeze)
    _write_outputs(out, cfg, state["log"], summary, ff, model, test_examples, freeze)
    return summary


def _like(leaves, template, where):
    """``template``'s pytree with the checkpoint's ``leaves`` (a list of arrays: models and
    optimizer states are stored as their leaves, never as objects)."""
    t_leaves, t_tree = jax.tree_util.tree_flatten(template)
    if not isinstance(leaves, list) or len(leaves) != len(t_leaves) or any(
            np.shape(a) != np.shape(b) for a, b in zip(leaves, t_leaves, strict=True)):
        raise InputError(f"{where}: the checkpoint was written for another model or optimizer;"
                         " start again without --resume")
    return jax.tree_util.tree_unflatten(t_tree, [jax.numpy.asarray(a) for a in leaves])


def _describe(model) -> str:
    """What a checkpoint's weights belong to, e.g. "a painn potential (hidden 32, 3 layers)"."""
    c = model.config
    if hasattr(c, "architecture"):
        return f"a {c.architecture} potential (hidden {c.hidden}, {c.layers} layers, n_rbf" \
               f" {c.n_rbf})"
    return f"a parameter predictor (hidden {c.hidden}, {c.layers} layers)"


def _save(path, cfg, stage, state, trainable, best, opt_state, model=None):
    arrays: dict = {}
    leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]  # noqa: E731
    blob = {**state, "stage": stage, "trainable": leaves(trainable), "best": leaves(best),
            "opt_state": leaves(opt_state)}
    header = {"format": FORMAT, "version": VERSION, "config_sha256": cfg.sha256,
              **({"model": _describe(model)} if model is not None else {}),
              "state": encode(blob, arrays)}
    write_archive(path, header, arrays)


def evaluate(ff, model, examples, *, freeze=()) -> dict:
    """Held-out RMSE of relative energies (kJ/mol) and forces (kJ/mol/nm), per molecule and
    over all, with predictions for parity plots."""
    tset = TrainingSet(ff, model, examples, freeze=freeze)
    return {"overall": tset.metrics(tset.params),
            "per_molecule": tset.per_molecule_metrics(tset.params)}


def _write_outputs(out: Path, cfg, log, summary, ff, model, test, freeze):
    atomic_write(out / "log.jsonl", lambda tmp: Path(tmp).write_text(
        "".join(json.dumps(e) + "\n" for e in log)))
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(
        json.dumps(summary, indent=1) + "\n"))
    if not cfg.output.get("report", True):
        return
    from chronograd.ml.train_report import write_training_report

    write_training_report(out, log, summary, ff, model, test, freeze)


class _Progress:
    """A rich progress bar with the losses (no-op when disabled)."""

    def __init__(self, enabled, name, total, done):
        self.p = None
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn(f"train ({name})"), BarColumn(),
                          TextColumn("{task.completed}/{task.total}"),
                          TextColumn("loss {task.fields[loss]} val {task.fields[val]}"),
                          TimeElapsedColumn())
        self.p.start()
        self.task = self.p.add_task(name, total=total, completed=done, loss="-", val="-")

    def advance(self, entry):
        if self.p is not None:
            v = entry.get("validation_loss")
            self.p.update(self.task, advance=1, loss=f"{entry['train_loss']:.4g}",
                          val="-" if v is None else f"{v:.4g}")

    def close(self):
        if self.p is not None:
            self.p.stop()
