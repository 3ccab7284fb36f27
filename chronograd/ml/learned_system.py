"""Systems whose valence parameters and charges come from a learned predictor.

:func:`learned_system` types molecules with a SMIRNOFF force field (for van der Waals
parameters, 1-4 scaling, improper centres and nonbonded settings), then hands bonds, angles,
proper torsions (n = 1..6 on every torsion), impropers and charges to a
:class:`~chronograd.ml.predictor.ParameterPredictor`. The result is an ordinary ``System``:
MD, minimization, gradient estimators, batching and OpenMM export work unchanged. Its
parameters are ``{"forcefield": θ, "model": predictor weights}``, so one ``jax.grad`` gives
dU/dθ and dU/dw together; ``freeze=`` keeps chosen term kinds at their predicted values
without gradient; :func:`provenance_table` says where every slot comes from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.ml.atom_features import atom_features
from chronograd.ml.graph import MolecularGraph, molecular_graph
from chronograd.ml.predictor import (
    N_PERIODICITIES,
    TERM_KINDS,
    ParameterPredictor,
    PredictorConfig,
    TermIndex,
)
from chronograd.system.source import ForceFieldSource
from chronograd.system.terms import PeriodicTorsionTerm
from chronograd.topology.molecule import Molecule

# term kind -> the (term, attribute) slots it fills
KIND_SLOTS = {
    "bonds": (("Bonds", "k"), ("Bonds", "length")),
    "angles": (("Angles", "k"), ("Angles", "angle")),
    "propers": (("ProperTorsions", "k"), ("ProperTorsions", "phase")),
    "impropers": (("ImproperTorsions", "k"),),
    "charges": (("Nonbonded", "charge"),),
}


@dataclass(frozen=True, eq=False)
class LearnedModel:
    """A predictor with its configuration and a name (the provenance of its slots)."""

    config: PredictorConfig
    predictor: ParameterPredictor
    name: str = "model"

    @classmethod
    def initialize(cls, config: PredictorConfig | None = None, *, name: str = "model"):
        config = config or PredictorConfig()
        return cls(config, ParameterPredictor(config), name)

    @property
    def weights(self):
        return eqx.partition(self.predictor, eqx.is_array)[0]

    @property
    def skeleton(self):
        return eqx.partition(self.predictor, eqx.is_array)[1]

    def with_weights(self, weights) -> LearnedModel:
        return dataclasses.replace(self, predictor=eqx.combine(weights, self.skeleton))

    params_key = "model"  # where its weights live in a learned system's params
    base_key = "forcefield"  # where the force field's θ lives

    def build_system(self, ff, molecule, *, freeze=()):
        """The learned system of ``molecule`` (for training sets)."""
        return learned_system(ff, molecule, self, freeze=freeze)

    def graph(self, mol: Molecule) -> MolecularGraph:
        x = atom_features(mol, self.config.feature_spec(), label=f"model {self.name!r}")
        formal = [a.GetFormalCharge() for a in mol.rdmol.GetAtoms()]
        return molecular_graph(x, mol.bonds(), formal)


@dataclass(frozen=True, eq=False)
class ModelSource:
    """ParameterSource: ``{"forcefield": θ, "model": weights}`` -> slots.

    ``forcefield`` fills the slots the model does not (vdW, improper phases) and derives the
    exceptions; ``graph`` and ``index`` are the molecule's arrays (data: padded and stacked in
    batches); ``skeleton`` (the predictor's non-array part), ``frozen`` (term kinds held at
    their predicted values without gradient) and ``name`` are static.
    """

    forcefield: ForceFieldSource
    graph: MolecularGraph
    index: TermIndex
    skeleton: object
    frozen: tuple = ()
    name: str = "model"

    def __call__(self, params):
        slots = self.forcefield.raw_slots(params["forcefield"])
        out = eqx.combine(params["model"], self.skeleton)(self.graph, self.index)
        out = {k: jax.lax.stop_gradient(v) if k in self.frozen else v for k, v in out.items()}
        k_b, length = out["bonds"]
        k_a, angle = out["angles"]
        slots["Bonds"] = {"k": k_b, "length": length}
        slots["Angles"] = {"k": k_a, "angle": angle}
        k_t = out["propers"].reshape(-1)
        slots["ProperTorsions"] = {"k": k_t, "phase": jnp.zeros_like(k_t)}
        slots.setdefault("ImproperTorsions", {})["k"] = out["impropers"]
        slots["Nonbonded"]["charge"] = out["charges"]
        return self.forcefield.finalize(slots)

    @property
    def provenance(self) -> dict:
        prov = self.forcefield.provenance
        for kind, pairs in KIND_SLOTS.items():
            for term, attr in pairs:
                origin = f"model:{self.name}" + (" (frozen)" if kind in self.frozen else "")
                prov.setdefault(term, {})[attr] = origin
        return prov


jax.tree_util.register_dataclass(ModelSource, data_fields=["forcefield", "graph", "index"],
                                 meta_fields=["skeleton", "frozen", "name"])


def _check_freeze(freeze) -> tuple:
    freeze = tuple(freeze)
    unknown = [k for k in freeze if k not in TERM_KINDS]
    if unknown:
        raise InputError(f"freeze={unknown[0]!r} is not a term kind; term kinds:"
                         f" {', '.join(TERM_KINDS)}")
    return freeze


def learned_system(ff, molecules, model: LearnedModel, *, box=None, freeze=()):
    """A System for ``molecules`` with valence parameters and charges from ``model``.

    Args:
        ff: ForceField for vdW, 1-4 scales, improper centres and nonbonded settings (an
            unconstrained one, e.g. openff_unconstrained-2.3.0, keeps every bond a term).
        molecules: a Molecule or a list (copies share their typing).
        model: the LearnedModel.
        box: [3, 3] nm for PME; None for vacuum.
        freeze: term kinds ("bonds", "angles", "propers", "impropers", "charges") whose
            predicted values carry no gradient.

    Raises InputError naming the atom for an element (or connectivity) the model was not
    trained on.
    """
    freeze = _check_freeze(freeze)
    if isinstance(molecules, Molecule):
        molecules = [molecules]
    graphs, bare = {}, []
    for mol in molecules:
        if mol.identity() not in graphs:
            graphs[mol.identity()] = model.graph(mol)
        copy = Molecule(mol.rdmol, mol.name, np.zeros(mol.n_atoms), mol.positions)
        bare.append(copy)
    system = ff.create_system(bare, charges="from-file", box=box)
    if system.virtual_sites:
        raise InputError("learned systems do not place virtual sites; use a force field"
                         " without a VirtualSites section")
    features, bonds, formal, propers, offset = [], [], [], [], 0
    for mol in molecules:
        g = graphs[mol.identity()]
        features.append(g.node_features)
        bonds.append(mol.bonds() + offset)
        formal += [a.GetFormalCharge() for a in mol.rdmol.GetAtoms()]
        propers.append(mol.propers() + offset)
        offset += mol.n_atoms
    graph = molecular_graph(np.concatenate(features), np.concatenate(bonds), formal)
    propers = np.concatenate(propers).astype(np.int32).reshape(-1, 4)
    terms, old = [], {t.name: t for t in system.terms}
    for t in system.terms:
        if t.name == "ProperTorsions":
            t = PeriodicTorsionTerm(
                "ProperTorsions", np.repeat(propers, N_PERIODICITIES, axis=0),
                periodicity=np.tile(np.arange(1, N_PERIODICITIES + 1, dtype=np.int32),
                                    len(propers)), periodic=t.periodic)
        terms.append(t)
    ff_source = system.source
    maps = {term: {a: m for a, m in attrs.items()
                   if (term, a) not in {s for pairs in KIND_SLOTS.values() for s in pairs}}
            for term, attrs in ff_source.maps.items()}
    maps = {t: a for t, a in maps.items() if a}
    index = TermIndex(np.asarray(old["Bonds"].atoms, np.int32),
                      np.asarray(old["Angles"].atoms, np.int32), propers,
                      np.asarray(old["ImproperTorsions"].atoms, np.int32))
    source = ModelSource(ForceFieldSource(maps, ff_source.frozen, ff_source.rules),
                         graph, index, model.skeleton, freeze, model.name)
    params = {"forcefield": system.params, "model": model.weights}
    return dataclasses.replace(system, terms=tuple(terms), params=params, source=source,
                               _cache={})


def provenance_table(system, ff=None) -> list[dict]:
    """One row per slot: term, attribute, slot index, atoms, origin ("model:NAME",
    "forcefield:PARAMETER_ID/attribute" (row numbers without ``ff``) or "frozen") and whether
    it is trainable."""
    from chronograd.system.source import slot_entries

    source = system.source
    ff_source = getattr(source, "forcefield", source)
    ids = _row_ids(system, ff)
    by_slot = {}
    for term, attr, slot, row in slot_entries(ff_source):
        by_slot.setdefault((term, attr, slot), []).append(ids.get(row, f"row {row}"))
    rows = []
    prov = source.provenance if hasattr(source, "provenance") else {}
    terms = {t.name: t for t in system.terms}
    for term, attrs in system.slots().items():
        for attr, values in attrs.items():
            origin = prov.get(term, {}).get(attr, "frozen")
            atoms_of = getattr(terms.get(term), "atoms", None)
            for k in range(np.shape(values)[0]):
                if origin.startswith("model:"):
                    what, trainable = origin.replace(" (frozen)", ""), "(frozen)" not in origin
                elif (term, attr, k) in by_slot:
                    what, trainable = "forcefield:" + "+".join(by_slot[(term, attr, k)]), True
                else:  # frozen here: "frozen", or where it was imported from ("openmm")
                    what, trainable = (origin if origin != "theta" else "frozen"), False
                per_atom = term == "Nonbonded" and not attr.startswith("exception")
                atoms = (k,) if per_atom or atoms_of is None else \
                    tuple(int(a) for a in atoms_of[k])
                rows.append({"term": term, "attribute": attr, "slot": k, "atoms": atoms,
                             "origin": what, "trainable": trainable})
    return rows


def _row_ids(system, ff) -> dict[int, str]:
    """flat θ row -> "parameter id/attribute" (with ``ff``) or "handler/attribute[i]"."""
    from chronograd.system.source import theta_offsets

    if not isinstance(getattr(system.source, "forcefield", system.source), ForceFieldSource):
        return {}  # no force-field θ (an import, with or without learned charges)
    theta = system.params["forcefield"] if isinstance(system.params, dict) and \
        "forcefield" in system.params else system.params
    out = {}
    for (handler, attr), offset in theta_offsets(theta).items():
        n = int(np.size(theta[handler][attr]))
        info = ff.row_info.get(handler, {}).get(attr) if ff is not None else None
        for i in range(n):
            out[offset + i] = f"{info.ids[i]}/{attr}" if info is not None else \
                f"{handler}/{attr}[{i}]"
    return out
