"""Learned models as files: a directory with ``model.json`` (format, kind -- ``parameters``
for a parameter predictor, ``potential`` for a graph-network potential --, name,
configuration, the force field that supplies van der Waals parameters or, for a potential, the
force field it corrects (Δ-learning; null when it stands alone), training notes and the
SHA-256 of the weights) and ``weights.npz`` (one array per weight, named by its path in the
module; read with ``allow_pickle=False``). Nothing in a model directory is executed.

``load_model("default")`` reads the model shipped in ``chronograd/ml/models/default``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from chronograd.errors import InputError
from chronograd.interop.archive import read_arrays
from chronograd.interop.files import atomic_write
from chronograd.ml.learned_system import LearnedModel
from chronograd.ml.predictor import ParameterPredictor, PredictorConfig

FORMAT = "chronograd-model/1"
SHIPPED = Path(__file__).parent / "models"


def _leaf_names(tree) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(p) for p, _ in paths]


def _kind(model) -> str:
    from chronograd.ml.potential_term import PotentialModel

    return "potential" if isinstance(model, PotentialModel) else "parameters"


def save_model(model, directory, *, forcefield: str | None, notes: dict | None = None):
    """Write ``model`` (a LearnedModel or a PotentialModel) to ``directory`` (created);
    ``forcefield`` names the force field its learned systems take van der Waals parameters
    from, or the force field a potential corrects (None: the potential alone)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = model.weights
    names = _leaf_names(weights)
    arrays = {f"w{k:03d}": np.asarray(v) for k, v in enumerate(jax.tree.leaves(weights))}

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(directory / "weights.npz", write)
    digest = hashlib.sha256((directory / "weights.npz").read_bytes()).hexdigest()
    meta = {"format": FORMAT, "kind": _kind(model), "name": model.name,
            "config": model.config.to_json(),
            "forcefield": forcefield, "weights": {"file": "weights.npz", "sha256": digest,
                                                  "names": names},
            "notes": notes or {}}
    atomic_write(directory / "model.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1) + "\n"))


def load_model(name_or_path, *, kind: str | None = None) -> tuple[LearnedModel, dict]:
    """(model, metadata) from a model directory, or ``"default"`` for the shipped model:
    a LearnedModel (kind ``parameters``) or a PotentialModel (kind ``potential``); ``kind``
    (when given) is the kind the caller needs.

    Raises InputError naming the file and the problem: missing files, malformed JSON, another
    format, a weights file whose SHA-256 differs from the one recorded (corrupt or replaced),
    weights whose names or shapes do not fit the configuration, non-finite weights."""
    path = SHIPPED / str(name_or_path) if str(name_or_path) == "default" else \
        Path(name_or_path)
    meta_path = path / "model.json"
    if not meta_path.is_file():
        raise InputError(f"{path}: not a model directory (no model.json); give a directory"
                         " written by chronograd fit, or 'default'")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{meta_path}: not valid JSON ({err})") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if found != FORMAT:
        raise InputError(f"{meta_path}: format {found!r} is not {FORMAT!r}")
    found_kind = meta.get("kind", "parameters")
    if kind is not None and found_kind != kind:
        what = {"parameters": "a learned parameter model (use --model)",
                "potential": "a learned potential (use --potential)"}
        raise InputError(f"{meta_path}: this is {what.get(found_kind, repr(found_kind))}, not"
                         f" {what.get(kind, kind).split(' (')[0]}")
    try:
        if found_kind == "potential":
            from chronograd.ml.potential_models import PotentialConfig, build_potential
            from chronograd.ml.potential_term import PotentialModel

            config = PotentialConfig.from_json(meta["config"])
            make, wrap = build_potential, PotentialModel
        elif found_kind == "parameters":
            config = PredictorConfig.from_json(meta["config"])
            make, wrap = ParameterPredictor, LearnedModel
        else:
            raise ValueError(f"unknown kind {found_kind!r}")
        info = meta["weights"]
        weights_path = path / info["file"]
        expected, names = str(info["sha256"]), list(info["names"])
        forcefield = meta["forcefield"]
        forcefield = None if forcefield is None else str(forcefield)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{meta_path}: malformed model description ({err!r})") from None
    if Path(info["file"]).name != info["file"] or not weights_path.is_file():
        raise InputError(f"{meta_path}: weights file {info['file']!r} is missing")
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    if digest != expected:
        raise InputError(f"{weights_path}: SHA-256 {digest} does not match {expected} recorded"
                         f" in {meta_path.name}; the weights are corrupt or were replaced")
    template = eqx.partition(make(config), eqx.is_array)
    leaves, treedef = jax.tree_util.tree_flatten(template[0])
    if names != _leaf_names(template[0]):
        raise InputError(f"{meta_path}: its weights ({len(names)} arrays) are not those of the"
                         f" {getattr(config, 'architecture', 'parameter predictor')} its"
                         f" configuration describes ({len(leaves)} arrays); the weights were"
                         " written for another architecture")
    data = read_arrays(weights_path, "model weights file")
    missing = [f"w{k:03d}" for k in range(len(leaves)) if f"w{k:03d}" not in data]
    if missing:
        raise InputError(f"{weights_path}: no array {missing[0]} ({len(leaves)} expected)")
    arrays = [data[f"w{k:03d}"] for k in range(len(leaves))]
    for name, a, ref in zip(names, arrays, leaves, strict=True):
        if a.shape != ref.shape or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
            raise InputError(f"{weights_path}: weight {name} has shape {a.shape}"
                             f" ({a.dtype}), expected {ref.shape} finite floats")
    weights = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(a, float)
                                                     for a in arrays])
    model = wrap(config, eqx.combine(weights, template[1]), str(meta.get("name", "model")))
    meta["forcefield"] = forcefield
    return model, meta


def check_forcefield(meta: dict, ff_name: str | None) -> str:
    """The force field a learned system should use: the model's own; ``ff_name`` (from the
    user) must agree with it."""
    own = meta["forcefield"]
    if ff_name is not None and Path(ff_name).name != Path(own).name:
        raise InputError(f"model {meta.get('name')!r} takes van der Waals parameters from"
                         f" {own}, not {ff_name}; drop --ff or pass --ff {own}")
    return own


class LearnedBuilder:
    """``create_system(mol)`` with a learned model (for the CLI, beside a ForceField)."""

    def __init__(self, model: str, ff_name: str | None = None):
        from chronograd.forcefield import ForceField

        self.model, self.meta = load_model(model, kind="parameters")
        self.ff = ForceField(check_forcefield(self.meta, ff_name))

    def create_system(self, mol, charges=None, box=None):
        from chronograd.ml.learned_system import learned_system

        return learned_system(self.ff, mol, self.model, box=box)


class PotentialBuilder:
    """``create_system(mol)`` with a learned potential (for the CLI): on top of the force field
    it was trained with (Δ-learning), or alone when it was trained alone."""

    def __init__(self, potential: str, ff_name: str | None = None):
        from chronograd.forcefield import ForceField

        self.model, self.meta = load_model(potential, kind="potential")
        own = self.meta["forcefield"]
        if own is None and ff_name is not None:
            raise InputError(f"potential {self.meta.get('name')!r} was trained alone, not on a"
                             f" force field; drop --ff {ff_name}")
        self.ff = None if own is None else ForceField(check_forcefield(self.meta, ff_name))

    def create_system(self, mol, charges=None, box=None):
        from chronograd.ml.potential_term import potential_system

        return potential_system(mol, self.model, ff=self.ff, box=box, charges=charges)
