"""Frozen imports stay first-class: an OpenMM System made elsewhere (GAFF from
openmmforcefields, an espaloma XML, an Interchange export) as a System whose every slot is
frozen with provenance "openmm", optionally with its charges from a differentiable model.

    system = import_frozen(openmm_system)                     # params = {}: nothing trains
    mixed = with_learned_charges(system, mol, nagl.network, name="nagl")
    # mixed.params = {"nagl": network weights}; charges and the 1-4 charge products follow
    # the model, every other slot stays as imported

Exception charge products are rebuilt from the new charges with the scale each exception had
in the import (``chargeProd / (q_i q_j)``: 1/1.2 for AMBER/GAFF 1-4 pairs, 0 for exclusions).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.system.nonbonded import NonbondedTerm


@dataclass(frozen=True, eq=False)
class ImportedSource:
    """Every slot as imported, without gradient; provenance ``origin``."""

    slots: dict
    origin: str = "openmm"

    def __call__(self, params):
        return {t: {a: jax.lax.stop_gradient(jnp.asarray(v)) for a, v in attrs.items()}
                for t, attrs in self.slots.items()}

    @property
    def provenance(self) -> dict:
        return {t: {a: self.origin for a in attrs} for t, attrs in self.slots.items()}


@dataclass(frozen=True, eq=False)
class LearnedChargeSource:
    """An ImportedSource whose charges (and exception charge products) come from a model:
    ``params = {name: model weights}``."""

    base: ImportedSource
    graph: object
    index: object  # TermIndex for a parameter predictor, None for a charge network
    scale: np.ndarray  # [E] chargeProd / (q_i q_j) of every exception, as imported
    exception_atoms: np.ndarray  # [E, 2]
    term: str = "nonbonded"
    skeleton: object = None
    name: str = "model"

    def __call__(self, params):
        slots = self.base(params)
        model = eqx.combine(params[self.name], self.skeleton)
        q = model(self.graph) if self.index is None else \
            model(self.graph, self.index)["charges"]
        i, j = self.exception_atoms[:, 0], self.exception_atoms[:, 1]
        slots[self.term]["charge"] = q
        slots[self.term]["exception_charge_prod"] = jnp.asarray(self.scale) * q[i] * q[j]
        return slots

    @property
    def provenance(self) -> dict:
        prov = self.base.provenance
        prov[self.term]["charge"] = f"model:{self.name}"
        prov[self.term]["exception_charge_prod"] = f"model:{self.name}"
        return prov


jax.tree_util.register_dataclass(ImportedSource, data_fields=["slots"], meta_fields=["origin"])
jax.tree_util.register_dataclass(
    LearnedChargeSource, data_fields=["base", "graph", "index", "scale", "exception_atoms"],
    meta_fields=["term", "skeleton", "name"])


def import_frozen(openmm_system, *, source: str = "OpenMM System"):
    """``cg.from_openmm`` with every slot frozen (no parameter trains) and provenance
    "openmm"."""
    from chronograd.interop.openmm import from_openmm

    system = from_openmm(openmm_system, source=source)
    slots = {t: {a: np.asarray(v) for a, v in attrs.items()} for t, attrs in
             system.params.items()}
    return dataclasses.replace(system, params={}, source=ImportedSource(slots), _cache={})


def _exception_scales(charges, atoms, products, epsilons, where):
    qq = charges[atoms[:, 0]] * charges[atoms[:, 1]]
    known = np.abs(qq) > 1e-10
    scale = np.zeros(len(atoms))
    scale[known] = products[known] / qq[known]
    unknown = ~known & (np.abs(products) > 1e-12)
    if np.any(unknown):
        e = int(np.flatnonzero(unknown)[0])
        raise InputError(f"{where}: exception {e} (atoms {tuple(atoms[e])}) has charge product"
                         f" {products[e]} but its atoms' charges multiply to 0; its scale"
                         " cannot be inferred")
    # pairs of uncharged atoms: the 1-4 scale of the other scaled pairs if LJ is kept
    pairs14 = known & (np.abs(scale) > 1e-12)
    typical = float(np.median(scale[pairs14])) if np.any(pairs14) else 0.0
    scale[~known] = np.where(np.abs(epsilons[~known]) > 0, typical, 0.0)
    return scale


def with_learned_charges(system, mol, charge_model, *, name: str = "model"):
    """``system`` (from :func:`import_frozen`) with charges from ``charge_model``: a NAGL model
    (``load_nagl_model(...)``: its network) or a LearnedModel (its predictor's charges).
    ``mol`` is the molecule the system was made for (same atom order). The system's params
    become ``{name: the network's weights}``.

    Raises InputError when the system is not a frozen import of ``mol`` or an exception's
    scale cannot be inferred."""
    from chronograd.ml.predictor import TermIndex

    if not isinstance(system.source, ImportedSource):
        raise InputError("with_learned_charges takes a system from import_frozen")
    if system.n_atoms != mol.n_atoms or system.virtual_sites:
        raise InputError(f"the system has {system.n_atoms} particles but {mol.name or 'the'}"
                         f" molecule has {mol.n_atoms} atoms; give the molecule it was made"
                         " for")
    nb = next((t for t in system.terms if isinstance(t, NonbondedTerm)), None)
    if nb is None:
        raise InputError("the imported system has no NonbondedForce to take charges from")
    slots = system.source.slots[nb.name]
    atoms = np.asarray(nb.exception_atoms, np.int64).reshape(-1, 2)
    scale = _exception_scales(np.asarray(slots["charge"]), atoms,
                              np.asarray(slots["exception_charge_prod"]),
                              np.asarray(slots["exception_epsilon"]), "the imported system")
    if hasattr(charge_model, "network"):  # a NAGL model
        network, index = charge_model.network, None
    else:  # a LearnedModel: only its charge head matters; no valence rows to pool
        empty = np.zeros((0, 4), np.int32)
        network = charge_model.predictor
        index = TermIndex(empty[:, :2], empty[:, :3], empty, empty)
    weights, skeleton = eqx.partition(network, eqx.is_array)
    source = LearnedChargeSource(system.source, charge_model.graph(mol), index, scale,
                                 atoms.astype(np.int32), nb.name, skeleton, name)
    return dataclasses.replace(system, params={name: weights}, source=source, _cache={})
