"""``chronograd fit`` configuration for training a learned parameter model (a ``[model]`` table).

    [model]
    forcefield = "openff_unconstrained-2.3.0.offxml"   # vdW, 1-4 scaling, improper centres
    init = "new"                 # new | default | a model directory (fine-tune it)
    name = "my-model"
    hidden = 64                  # new models: width, SAGE layers, readout width, seed
    layers = 3
    readout = 64
    seed = 0
    freeze = []                  # term kinds held fixed: bonds angles propers impropers charges
    train_forcefield = false     # also train θ (the force field's vdW parameters)

    [[stages]]                   # run in order
    name = "pretrain"
    molecules = "pretrain.smi"   # SMILES [name] per line: force-field labels, no QM
    label_weight = 1.0
    charge_weight = 1.0          # charge target: the NAGL AM1-BCC model (charge_target)
    epochs = 300
    learning_rate = 3e-3

    [[stages]]
    name = "finetune"
    dataset = "../data/qm_mols"  # chronograd-qm/1; its "train" geometries
    energy_weight = 1.0
    force_weight = 1.0
    charge_weight = 1.0
    validation_fraction = 0.15   # of the training molecules, held out for early stopping
    patience = 50                # epochs without a better validation loss
    epochs = 500
    learning_rate = 1e-3

    [output]
    directory = "model-out"
    checkpoint_every = 10

A learned potential (force matching) has ``kind = "potential"``; ``forcefield`` is then the
force field it corrects (Δ-learning) and may be left out (the network alone); its stages are
QM ``dataset`` stages with energy and force weights:

    [model]
    kind = "potential"
    architecture = "schnet"      # schnet | painn
    forcefield = "openff-2.2.1.offxml"   # optional: U = U_Sage(θ) + U_NN(w)
    cutoff = 0.5                 # nm
    hidden = 32
    layers = 3
    n_rbf = 16
    basis = "gaussian"           # gaussian | bessel
    envelope = "cosine"          # cosine | polynomial
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from chronograd.errors import InputError
from chronograd.fit.config import _line_of, read_toml
from chronograd.ml.predictor import TERM_KINDS

_NUM = (int, float)
_SCHEMA = {
    "model": {"forcefield": str, "init": str, "name": str, "hidden": int, "layers": int,
              "readout": int, "seed": int, "freeze": list, "train_forcefield": bool,
              "kind": str, "architecture": str, "cutoff": _NUM, "n_rbf": int, "basis": str,
              "envelope": str, "energy_scale": _NUM},
    "stages": {"name": str, "molecules": str, "dataset": str, "records": list, "split": str,
               "energy_weight": _NUM, "force_weight": _NUM, "charge_weight": _NUM,
               "label_weight": _NUM, "charge_target": str, "validation_fraction": _NUM,
               "patience": int, "epochs": int, "learning_rate": _NUM, "n_buckets": int,
               "max_molecules": int},
    "output": {"directory": str, "checkpoint_every": int, "report": bool},
}


@dataclass
class TrainConfig:
    path: Path
    text: str
    model: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    output: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def error(self, table, key=None, index=None, message=""):
        line = _line_of(self.text, table, key, index)
        where = f"[[{table}]] #{index + 1}" if index is not None else f"[{table}]"
        at = f", line {line}" if line else ""
        return InputError(f"{self.path}{at}: {where}{' ' + key if key else ''}: {message}")

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()


def is_model_config(path) -> bool:
    """True when the TOML at ``path`` trains a model (has a [model] table)."""
    try:
        return "model" in tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def load_train_config(path) -> TrainConfig:
    """Read and check a model-training config; errors name the file, line and key."""
    path, text, data = read_toml(path)
    cfg = TrainConfig(path.resolve(), text)
    for table, value in data.items():
        if table not in _SCHEMA:
            raise cfg.error(table, message=f"unknown table; known: {', '.join(_SCHEMA)}")
        entries = value if table == "stages" else [value]
        if table == "stages" and not isinstance(value, list):
            raise cfg.error(table, message="write it as an array of tables, [[stages]]")
        for i, entry in enumerate(entries):
            index = i if table == "stages" else None
            if not isinstance(entry, dict):
                raise cfg.error(table, index=index, message="expected a table")
            for key, v in entry.items():
                want = _SCHEMA[table].get(key)
                if want is None:
                    raise cfg.error(table, key, index, "unknown key; known keys: "
                                    + ", ".join(_SCHEMA[table]))
                if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                    name = want.__name__ if isinstance(want, type) else "number"
                    raise cfg.error(table, key, index, f"expected {name}, got {v!r}")
    for table in ("model", "stages", "output"):
        if table not in data:
            raise InputError(f"{path}: missing [{'[stages]' if table == 'stages' else table}]"
                             " table")
    cfg.model, cfg.stages, cfg.output = data["model"], data["stages"], data["output"]
    kind = cfg.model.setdefault("kind", "parameters")
    if kind not in ("parameters", "potential"):
        raise cfg.error("model", "kind", None, f"{kind!r} is not 'parameters' (a parameter"
                        " predictor) or 'potential' (a graph-network potential)")
    potential_keys = ("architecture", "cutoff", "n_rbf", "basis", "envelope", "energy_scale")
    if kind == "potential":
        _check_potential(cfg)
    else:
        if "forcefield" not in cfg.model:
            raise cfg.error("model", message="missing required key 'forcefield'")
        for key in potential_keys:
            if key in cfg.model:
                raise cfg.error("model", key, None, "applies to kind = 'potential' only")
    if "directory" not in cfg.output:
        raise cfg.error("output", message="missing required key 'directory'")
    freeze = cfg.model.get("freeze", [])
    for kind in freeze:
        if kind not in TERM_KINDS:
            raise cfg.error("model", "freeze", None, f"{kind!r} is not a term kind; term kinds:"
                            f" {', '.join(TERM_KINDS)}")
    for i, stage in enumerate(cfg.stages):
        stage.setdefault("name", f"stage{i + 1}")
        if ("molecules" in stage) == ("dataset" in stage):
            raise cfg.error("stages", index=i, message="give either 'molecules' (force-field"
                            " labels) or 'dataset' (QM data)")
        if stage.get("epochs", 1) < 1:
            raise cfg.error("stages", "epochs", i, "must be at least 1")
        if not 0 <= stage.get("validation_fraction", 0.0) < 1:
            raise cfg.error("stages", "validation_fraction", i, "must be in [0, 1)")
        if stage.get("charge_target", "nagl") not in ("nagl", "none"):
            raise cfg.error("stages", "charge_target", i, "must be 'nagl' or 'none'")
        trained = {"charges": stage.get("charge_weight", 0.0) > 0,
                   **{k: stage.get("label_weight", 0.0) > 0 for k in
                      ("bonds", "angles", "propers", "impropers")}}
        for kind in freeze:
            key = "charge_weight" if kind == "charges" else "label_weight"
            if trained.get(kind) and all(trained.get(k) is False or k in freeze
                                         for k in (["charges"] if kind == "charges" else
                                                   ["bonds", "angles", "propers",
                                                    "impropers"])):
                raise cfg.error("stages", key, i, f"trains {kind}, which [model] freeze holds"
                                " fixed; set it to 0 or unfreeze them")
        if stage.get("max_molecules", 1) < 1:
            raise cfg.error("stages", "max_molecules", i, "must be at least 1")
    if cfg.output.get("checkpoint_every", 1) < 1:
        raise cfg.error("output", "checkpoint_every", None, "must be at least 1")
    return cfg


def _check_potential(cfg) -> None:
    """A potential's settings and stages (QM data, no charges or labels)."""
    m = cfg.model
    for key in ("readout", "freeze"):
        if key in m:
            raise cfg.error("model", key, None, "applies to parameter models, not potentials")
    if m.get("train_forcefield") and "forcefield" not in m:
        raise cfg.error("model", "train_forcefield", None, "needs a 'forcefield' to train")
    if m.get("init", "new") == "new":
        try:
            potential_config(m)
        except ValueError as err:
            raise cfg.error("model", message=str(err)) from None
    elif any(k in m for k in ("architecture", "cutoff", "hidden", "layers", "n_rbf")):
        raise cfg.error("model", "init", None, "a model read from a directory keeps its own"
                        " architecture; drop the architecture keys")
    for i, stage in enumerate(cfg.stages):
        if "molecules" in stage:
            raise cfg.error("stages", "molecules", i, "a potential trains on QM data; give a"
                            " 'dataset'")
        for key in ("charge_weight", "label_weight"):
            if stage.get(key, 0):
                raise cfg.error("stages", key, i, "a potential has no charges or parameter"
                                " labels to train; set it to 0")


def potential_config(m: dict):
    """PotentialConfig from a [model] table (ValueError for bad settings)."""
    from chronograd.ml.potential_models import PotentialConfig

    keys = ("architecture", "cutoff", "hidden", "layers", "n_rbf", "basis", "envelope",
            "energy_scale", "seed")
    return PotentialConfig(**{k: m[k] for k in keys if k in m})
