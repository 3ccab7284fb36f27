"""Training a learned parameter model *through* the system: loss on QM energies and forces (and
on charge targets) -> system energies -> MM parameters -> model weights (and optionally θ).

Molecules are learned systems (:func:`~chronograd.ml.learned_system.learned_system`) stacked
into a few padded size buckets (``stack_systems``); every molecule's conformers are a further
padded axis. One compiled program per bucket computes, for all molecules and conformers, the
sums of squared residuals:

- relative energies: (E_MM - <E_MM>) - (E_QM - <E_QM>) over each molecule's conformers
  (kJ/mol), so each molecule's arbitrary energy zero drops out;
- forces (kJ/mol/nm), every atom and component;
- charges against a physical target (e), e.g. AM1-BCC from the NAGL model: trained on
  energies alone, charges soak up valence errors;
- for pre-training, the force field's own parameters as labels (:func:`label_targets`).

Padded molecules, conformers, atoms and term rows carry zero weight, so the batched loss equals
the sum over molecules (tested). Gradients are one reverse pass (``jax.value_and_grad``); the
optimizer is optax's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from chronograd.errors import InputError
from chronograd.ml.predictor import N_PERIODICITIES
from chronograd.system import structure as st
from chronograd.system.batch import stack_systems


@dataclass
class Example:
    """One molecule's training data (any part may be None).

    positions [C, N, 3] nm, energy [C] kJ/mol, forces [C, N, 3] kJ/mol/nm: QM conformers;
    charges [N] e: a charge target; labels: {kind: arrays} force-field parameters to imitate
    (pre-training; see :func:`label_targets`).
    """

    name: str
    molecule: object
    positions: np.ndarray | None = None
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    charges: np.ndarray | None = None
    labels: dict | None = None


class _Data(NamedTuple):
    x: jnp.ndarray  # [B, C, N, 3]
    conf: jnp.ndarray  # [B, C] 1 for real conformers
    energy: jnp.ndarray  # [B, C]
    forces: jnp.ndarray  # [B, C, N, 3]
    atom: jnp.ndarray  # [B, N] 1 for real atoms
    charges: jnp.ndarray  # [B, N]
    has_charges: jnp.ndarray  # [B]
    labels: dict  # kind -> (values [B, R, ...], mask [B, R])


# Widths that make label residuals dimensionless (pre-training).
LABEL_SCALES = {"bond_k": None, "bond_length": 0.002, "angle_k": None, "angle": 0.03,
                "propers": 2.0, "impropers": 2.0}


def _sums(structure, d: _Data, params, qm: bool = True):
    """Per-molecule sums of squared residuals {name: scalar} (pure; vmapped over molecules).
    Without ``qm`` (label-only pre-training) no energy or force is evaluated."""
    slots = st.slots_of(structure, params)
    if not qm:
        out = {"charges": d.has_charges * jnp.sum(d.atom * (slots["Nonbonded"]["charge"]
                                                            - d.charges) ** 2)}
        out.update(_label_sums(slots, d.labels))
        return out

    def energy(x):
        return sum(st.term_energies(structure, x, None, slots).values())

    e, g = jax.vmap(jax.value_and_grad(energy))(d.x)
    out = _residual_sums(e, g, slots, d)
    if d.labels:
        out.update(_label_sums(slots, d.labels))
    return out


def _predict(structure, d: _Data, params):
    """Energies [C] (kJ/mol) and forces [C, N, 3] (kJ/mol/nm) of one molecule's conformers."""
    slots = st.slots_of(structure, params)
    e, g = jax.vmap(jax.value_and_grad(
        lambda x: sum(st.term_energies(structure, x, None, slots).values())))(d.x)
    return e, -g


def _residual_sums(e, g, slots, d):
    w = d.conf
    n = jnp.maximum(jnp.sum(w), 1.0)
    de = (e - jnp.sum(w * e) / n) - (d.energy - jnp.sum(w * d.energy) / n)
    out = {
        "energy": jnp.sum(w * de ** 2),
        "forces": jnp.sum(w[:, None, None] * d.atom[None, :, None] * (-g - d.forces) ** 2),
    }
    if "Nonbonded" in slots:  # a learned potential alone has no charges
        out["charges"] = d.has_charges * jnp.sum(d.atom * (slots["Nonbonded"]["charge"]
                                                           - d.charges) ** 2)
    return out


def _label_sums(slots, labels):
    out = {}
    pred = {
        "bond_k": jnp.log(slots["Bonds"]["k"]), "bond_length": slots["Bonds"]["length"],
        "angle_k": jnp.log(slots["Angles"]["k"]), "angle": slots["Angles"]["angle"],
        "propers": slots["ProperTorsions"]["k"], "impropers": slots["ImproperTorsions"]["k"],
    }
    for kind, (value, mask) in labels.items():
        p = pred[kind][: value.shape[0]]
        scale = LABEL_SCALES[kind] or 1.0  # log k: a residual of 1 is a factor e
        ref = jnp.log(jnp.maximum(value, 1e-12)) if kind in ("bond_k", "angle_k") else value
        out[f"label_{kind}"] = jnp.sum(mask * ((p - ref) / scale) ** 2)
    return out


def _per_molecule_sums(structures, data, params, qm: bool = True):
    """Per bucket, {name: [B]} sums of every molecule."""
    return tuple(jax.vmap(_sums, in_axes=(0, 0, None, None))(s, d, params, qm)
                 for s, d in zip(structures, data, strict=True))


def _batch_sums(structures, data, params, qm: bool = True):
    per = _per_molecule_sums(structures, data, params, qm)
    return {k: sum(jnp.sum(p[k]) for p in per) for k in per[0]}


_SUMS = jax.jit(_batch_sums, static_argnames=("qm",))
_PER_MOLECULE = jax.jit(_per_molecule_sums, static_argnames=("qm",))
_PREDICT = jax.jit(lambda structures, data, params: tuple(
    jax.vmap(_predict, in_axes=(0, 0, None))(s, d, params)
    for s, d in zip(structures, data, strict=True)))


class TrainingSet:
    """Examples as systems of ``model`` in padded buckets, with the counts that turn sums into
    means. ``params`` is the systems' shared parameters: ``{"forcefield": θ, "model":
    weights}`` for a learned parameter model, ``{"base": θ, "potential": weights}`` for a
    learned potential (``model.build_system`` makes each molecule's system)."""

    def __init__(self, ff, model, examples: list[Example], *, n_buckets: int = 2, freeze=()):
        if not examples:
            raise InputError("no training examples")
        self.examples = list(examples)
        systems = [model.build_system(ff, ex.molecule, freeze=freeze) for ex in examples]
        self.batch = stack_systems(systems, n_buckets=n_buckets,
                                   names=[ex.name for ex in examples])
        self.params = systems[0].params
        self.data = tuple(self._bucket_data(b) for b in self.batch.buckets)
        self.counts = self._counts()
        self.qm = self.counts["energy"] > 0

    def _bucket_data(self, bucket) -> _Data:
        members = [self.examples[m] for m in bucket.members]
        n = bucket.n_padded
        c = max((0 if ex.positions is None else len(ex.positions)) for ex in members) or 1
        b = len(members)
        x = np.zeros((b, c, n, 3))
        conf, energy = np.zeros((b, c)), np.zeros((b, c))
        forces, atom = np.zeros((b, c, n, 3)), np.zeros((b, n))
        charges, has_q = np.zeros((b, n)), np.zeros(b)
        for row, ex in enumerate(members):
            k = ex.molecule.n_atoms
            atom[row, :k] = 1.0
            if ex.positions is not None:
                m = len(ex.positions)
                x[row, :m, :k] = ex.positions
                x[row, m:, :k] = ex.positions[0]  # padded conformers: a real geometry
                conf[row, :m] = 1.0
                energy[row, :m] = ex.energy
                forces[row, :m, :k] = ex.forces
            else:
                x[row, :, :k] = ex.molecule.positions
            if ex.charges is not None:
                charges[row, :k], has_q[row] = ex.charges, 1.0
        labels = {}
        if all(ex.labels is not None for ex in members):
            for kind in members[0].labels:
                rows = max(len(ex.labels[kind]) for ex in members)
                values, mask = np.zeros((b, rows)), np.zeros((b, rows))
                for r, ex in enumerate(members):
                    v = np.asarray(ex.labels[kind], float)
                    values[r, : len(v)], mask[r, : len(v)] = v, 1.0
                labels[kind] = (values, mask)
        return _Data(*(jnp.asarray(a) for a in (x, conf, energy, forces, atom, charges, has_q)),
                     {k: (jnp.asarray(v), jnp.asarray(m)) for k, (v, m) in labels.items()})

    def _counts(self) -> dict:
        return TrainingSet._counts_of(self.examples)

    @staticmethod
    def _counts_of(examples) -> dict:
        out = {"energy": 0, "forces": 0, "charges": 0}
        for ex in examples:
            if ex.positions is not None:
                out["energy"] += len(ex.positions)
                out["forces"] += ex.forces.size
            if ex.charges is not None:
                out["charges"] += ex.molecule.n_atoms
            for kind, v in (ex.labels or {}).items():
                out[f"label_{kind}"] = out.get(f"label_{kind}", 0) + len(v)
        return out

    def sums(self, params) -> dict:
        """Sums of squared residuals over the whole set (traceable in ``params``)."""
        return _SUMS(self.batch.structures(), self.data, params, qm=self.qm)

    def arrays(self) -> tuple:
        """(structures, data): the set's arrays, arguments of compiled functions."""
        return self.batch.structures(), self.data

    def per_molecule_metrics(self, params) -> dict:
        """{example name: metrics} from one compiled program over the whole set."""
        per = _PER_MOLECULE(self.batch.structures(), self.data, params, qm=self.qm)
        out = {}
        for b, sums in zip(self.batch.buckets, per, strict=True):
            for row, m in enumerate(b.members):
                ex = self.examples[m]
                counts = TrainingSet._counts_of([ex])
                out[ex.name] = {f"{k}_rmse": float(np.sqrt(float(v[row]) / counts[k]))
                                for k, v in sums.items() if counts.get(k)}
        return out

    def predictions(self, params) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per example, (energies [C] kJ/mol, forces [C, N, 3] kJ/mol/nm) of its conformers."""
        per = _PREDICT(self.batch.structures(), self.data, params)
        out = [None] * len(self.examples)
        for b, (e, f) in zip(self.batch.buckets, per, strict=True):
            for row, m in enumerate(b.members):
                ex = self.examples[m]
                c = 0 if ex.positions is None else len(ex.positions)
                out[m] = (np.asarray(e[row, :c]), np.asarray(f[row, :c, : ex.molecule.n_atoms]))
        return out

    def metrics(self, params) -> dict:
        """Root-mean-square residuals: energy (kJ/mol), forces (kJ/mol/nm), charges (e) and
        label residuals (in their scales)."""
        s = self.sums(params)
        return {f"{k}_rmse": float(np.sqrt(float(v) / self.counts[k]))
                for k, v in s.items() if self.counts.get(k)}


@dataclass(frozen=True)
class LossWeights:
    """Weights and widths of the loss terms: sum_k w_k * mean_k(residual^2) / width_k^2."""

    energy: float = 1.0
    forces: float = 1.0
    charges: float = 1.0
    labels: float = 0.0
    energy_width: float = 4.184  # 1 kcal/mol
    force_width: float = 41.84  # 1 kcal/mol/Angstrom
    charge_width: float = 0.05


def combine(sums: dict, counts: tuple, weights: LossWeights):
    """The weighted loss from sums of squared residuals and ``counts`` ((name, n) pairs)."""
    counts = dict(counts)
    widths = {"energy": weights.energy_width, "forces": weights.force_width,
              "charges": weights.charge_width}
    factors = {"energy": weights.energy, "forces": weights.forces, "charges": weights.charges}
    total = 0.0
    for key, value in sums.items():
        if not counts.get(key):
            continue
        if key.startswith("label_"):
            total = total + weights.labels * value / counts[key]
        elif factors[key]:
            total = total + factors[key] * value / counts[key] / widths[key] ** 2
    return total


def loss_fn(training: TrainingSet, weights: LossWeights):
    """``loss(params) -> scalar``: the weighted mean squared residuals of ``training``."""
    counts = tuple(sorted(training.counts.items()))
    return lambda params: combine(training.sums(params), counts, weights)


def _loss(trainable, fixed, structures, data, counts, weights, qm):
    sums = _batch_sums(structures, data, {**fixed, **trainable}, qm)
    return combine(sums, counts, weights)


@functools.partial(jax.jit, static_argnames=("counts", "weights", "qm", "optimizer"))
def train_step(trainable, opt_state, fixed, structures, data, *, counts, weights, qm,
               optimizer):
    """One optax step on the whole set: (trainable, opt_state, loss). Compiled once per set
    shapes, loss weights and optimizer (module level: not rebuilt per stage or run)."""
    value, grad = jax.value_and_grad(_loss)(trainable, fixed, structures, data, counts,
                                            weights, qm)
    updates, opt_state = optimizer.update(grad, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, value


loss_value = jax.jit(_loss, static_argnames=("counts", "weights", "qm"))


@functools.cache
def adam(learning_rate: float):
    """optax.adam, one object per learning rate (a static argument of ``train_step``)."""
    return optax.adam(learning_rate)


def label_targets(ff_system, learned, mol) -> dict:
    """Force-field parameters of ``mol`` as labels for pre-training, in the learned system's
    row order: bonds and angles (k, equilibrium), proper torsions as k_n (n = 1..6, the sign
    carrying a 180-degree phase), impropers k per trefoil row."""
    from jax.flatten_util import ravel_pytree

    # slot values on the host (SlotMap.apply_host): no compilation per molecule
    flat = np.asarray(ravel_pytree(ff_system.params)[0])
    slots = {t: {a: m.apply_host(flat) for a, m in attrs.items()}
             for t, attrs in ff_system.source.maps.items()}
    terms = {t.name: t for t in ff_system.terms}
    out = {"bond_k": slots["Bonds"]["k"], "bond_length": slots["Bonds"]["length"],
           "angle_k": slots["Angles"]["k"], "angle": slots["Angles"]["angle"],
           "impropers": slots["ImproperTorsions"]["k"]}
    propers = learned.source.index.propers
    where = {tuple(int(a) for a in p): k for k, p in enumerate(propers)}
    k_n = np.zeros((len(propers), N_PERIODICITIES))
    t = terms["ProperTorsions"]
    for atoms, n, k, phase in zip(t.atoms, t.periodicity, slots["ProperTorsions"]["k"],
                                  slots["ProperTorsions"]["phase"], strict=True):
        key = tuple(int(a) for a in atoms)
        key = key if key[0] < key[3] else key[::-1]
        if key in where and 1 <= n <= N_PERIODICITIES:
            k_n[where[key], n - 1] += float(k) * np.cos(float(phase))
    out["propers"] = k_n.reshape(-1)
    return {k: np.asarray(v, float) for k, v in out.items()}
