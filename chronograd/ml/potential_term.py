"""Graph-network potentials as energy terms of a System, alone or beside a force field.

:class:`NeuralPotentialTerm` is an ordinary term (``energy_terms(positions, box, params,
pairs)``): its ``params`` are the network's weights, its data are the atoms' species and its
pair candidates, so MD, minimization, every gradient estimator, batching and the CLI use it
unchanged. Its edges follow the pair policy: a molecule in vacuum holds the explicit i < j
candidate list (masked by the cutoff inside the energy), a periodic system builds a neighbor
list inside the energy (capacities sized for the densest matter, overflow gives NaN, never a
silently truncated sum). It sees every pair within its cutoff, bonded or not: the force
field's exclusions are not its business.

:func:`with_potential` adds a network to any system: ``U = U_base(θ) + U_NN(w)`` with
``params = {"base": θ, "potential": w}``, so one ``jax.grad`` gives dU/dθ and dU/dw
(Δ-learning on a force field; train either or both). :func:`potential_system` builds the
system of molecules from a force field (Δ-learning) or from the network alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.ml.edges import edges_from_pairs
from chronograd.ml.potential_models import PotentialConfig, build_potential
from chronograd.space.neighbor_list import in_trace_pairs, unskinned_list_fns
from chronograd.system.pairs import MAX_PARTICLE_DENSITY, explicit_pairs, neighbors_per_row

POTENTIAL = "NeuralPotential"  # the term's name: its slots are params["potential"]


@dataclass(frozen=True, eq=False)
class NeuralPotentialTerm:
    """Energy of a graph network over species [N] (index into the model's elements; -1 marks
    padded atoms) and pair candidates [P, 2] (rows with index N are padding). ``neighbors``
    (max neighbours per row, cell dims, cell capacity) means: build a neighbor list inside
    the energy instead (periodic systems). ``skeleton`` is the network without its weights."""

    name: str
    species: np.ndarray
    pairs: np.ndarray
    skeleton: object
    cutoff: float
    periodic: bool = False
    neighbors: tuple | None = None
    kind = "neural_potential"
    report = "neural_potential"

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def check_box(self, box, where: str = "") -> None:
        """InputError unless the periodic ``box`` is at least twice the cutoff wide."""
        if not self.periodic:
            return
        check_potential_box(box, self.cutoff, where)

    def edges(self, positions, box):
        """(Edges, overflow flag) of ``positions`` (pure)."""
        if self.neighbors is None:
            pairs = jnp.asarray(self.pairs)
            return edges_from_pairs(positions, None, pairs[:, 0], pairs[:, 1],
                                    self.cutoff), jnp.asarray(False)
        (i, j), overflow = in_trace_pairs(positions, box, float(self.cutoff), self.neighbors)
        return edges_from_pairs(positions, box, i, j, self.cutoff), overflow

    def energy_terms(self, positions, box, params, pairs=None):
        network = eqx.combine(params, self.skeleton)
        edges, overflow = self.edges(positions, box if self.periodic else None)
        energy = jnp.sum(network(jnp.asarray(self.species), edges))
        return {self.report: jnp.where(overflow, jnp.nan, energy)}


jax.tree_util.register_dataclass(
    NeuralPotentialTerm, data_fields=["species", "pairs"],
    meta_fields=["name", "skeleton", "cutoff", "periodic", "neighbors"])


def check_potential_box(box, cutoff: float, where: str = "") -> None:
    """The minimum image needs every box width >= 2 x the potential's cutoff."""
    from chronograd.space.periodic import perpendicular_widths

    widths = np.asarray(perpendicular_widths(np.asarray(box, np.float64)))
    if float(np.min(widths)) < 2.0 * cutoff:
        at = f"{where}: " if where else ""
        raise InputError(
            f"{at}the box is {float(np.min(widths)):.4f} nm wide but the potential's cutoff is"
            f" {cutoff} nm; a periodic box must be at least twice the cutoff"
            f" ({2 * cutoff} nm) wide: enlarge the box or use a model with a shorter cutoff")


@dataclass(frozen=True, eq=False)
class PotentialSource:
    """ParameterSource ``{"base": base params, "potential": weights}`` -> slots: the base
    system's slots (from its own source, or the params themselves) plus the network weights
    as the slots of the term ``term``."""

    base: object
    term: str = POTENTIAL

    def __call__(self, params):
        base = params["base"]
        slots = base if self.base is None else self.base(base)
        return {**slots, self.term: params["potential"]}

    @property
    def provenance(self) -> dict:
        prov = dict(getattr(self.base, "provenance", {}) or {})
        prov[self.term] = {"weights": "potential"}
        return prov


jax.tree_util.register_dataclass(PotentialSource, data_fields=["base"], meta_fields=["term"])


@dataclass(frozen=True, eq=False)
class PotentialModel:
    """A graph-network potential with its configuration and a name."""

    config: PotentialConfig
    network: object
    name: str = "potential"
    params_key = "potential"  # where its weights live in a system's params
    base_key = "base"  # where the rest of the system's parameters live

    @classmethod
    def initialize(cls, config: PotentialConfig | None = None, *, name: str = "potential"):
        config = config or PotentialConfig()
        return cls(config, build_potential(config), name)

    @property
    def weights(self):
        return eqx.partition(self.network, eqx.is_array)[0]

    @property
    def skeleton(self):
        return eqx.partition(self.network, eqx.is_array)[1]

    def with_weights(self, weights) -> PotentialModel:
        return dataclasses.replace(self, network=eqx.combine(weights, self.skeleton))

    def species(self, atomic_numbers, *, label: str = "") -> np.ndarray:
        """[N] species indices; InputError naming the first atom of an unknown element."""
        table = {int(z): k for k, z in enumerate(self.config.elements)}
        out = np.empty(len(atomic_numbers), np.int32)
        for a, z in enumerate(np.asarray(atomic_numbers, int)):
            if int(z) not in table:
                from rdkit import Chem

                symbol = Chem.GetPeriodicTable().GetElementSymbol(int(z)) if 0 < z < 119 \
                    else str(z)
                raise InputError(
                    f"{label + ': ' if label else ''}atom {a} is {symbol}, an element potential"
                    f" {self.name!r} was not trained on (it knows atomic numbers"
                    f" {list(self.config.elements)})")
            out[a] = table[int(z)]
        return out

    def term(self, atomic_numbers, *, box=None, label: str = "") -> NeuralPotentialTerm:
        """The energy term of atoms ``atomic_numbers`` (periodic when ``box`` is given)."""
        species = self.species(atomic_numbers, label=label)
        n, cutoff = len(species), float(self.config.cutoff)
        if box is None:
            return NeuralPotentialTerm(POTENTIAL, species, explicit_pairs(n, []),
                                       self.skeleton, cutoff)
        check_potential_box(box, cutoff, label)
        sized = unskinned_list_fns(n, cutoff).sized(
            box, max_neighbors=neighbors_per_row(cutoff, 0.0, n), density=MAX_PARTICLE_DENSITY)
        spec = (sized.max_neighbors, sized.cell_dims, sized.cell_capacity)
        return NeuralPotentialTerm(POTENTIAL, species, np.zeros((0, 2), np.int32),
                                   self.skeleton, cutoff, periodic=True, neighbors=spec)

    def build_system(self, ff, molecule, *, freeze=()):
        """The training system of ``molecule``: Δ on ``ff`` (or the network alone)."""
        if freeze:
            raise InputError("freeze applies to learned parameter models, not potentials")
        return potential_system(molecule, self, ff=ff)


def with_potential(system, model: PotentialModel, atomic_numbers, *, label: str = ""):
    """``system`` plus the network ``model`` over its atoms (``atomic_numbers`` [N]): params
    become ``{"base": system.params, "potential": weights}``."""
    from chronograd.system.structure import OpaqueSource, _is_pytree_node

    if any(isinstance(t, NeuralPotentialTerm) for t in system.terms):
        raise InputError("the system already has a neural potential term")
    if len(atomic_numbers) != system.n_atoms or system.virtual_sites:
        raise InputError(f"{len(atomic_numbers)} atomic numbers for {system.n_atoms} particles"
                         "; a potential needs one element per atom (no virtual sites)")
    if system.periodic and system.box is None:
        raise InputError("the system is periodic but has no default box; a potential sizes its"
                         " neighbor list from the box: build the system with box=")
    box = system.box
    term = model.term(atomic_numbers, box=box, label=label)
    base = system.source
    if base is not None and not _is_pytree_node(base):
        base = OpaqueSource(base)
    return dataclasses.replace(system, terms=(*system.terms, term),
                               params={"base": system.params, "potential": model.weights},
                               source=PotentialSource(base), _cache={})


def potential_system(molecules, model: PotentialModel, *, ff=None, box=None, charges=None):
    """System of ``molecules`` (a Molecule or a list) with the potential ``model``: on top of
    the force field ``ff`` (Δ-learning; ``charges`` as ``ff.create_system`` takes them: None
    for the force field's own charge model), or alone."""
    from chronograd.system.source import ForceFieldSource
    from chronograd.system.system import System
    from chronograd.topology.molecule import Molecule

    molecules = [molecules] if isinstance(molecules, Molecule) else list(molecules)
    numbers = np.concatenate([[a.GetAtomicNum() for a in m.rdmol.GetAtoms()]
                              for m in molecules])
    label = ", ".join(m.name for m in molecules[:3]) + (" ..." if len(molecules) > 3 else "")
    if ff is not None:
        base = ff.create_system(molecules, box=box, charges=charges)
    else:
        masses = np.concatenate([[a.GetMass() for a in m.rdmol.GetAtoms()] for m in molecules])
        box_arr = None if box is None else np.asarray(box, np.float64)
        base = System(np.asarray(masses, np.float64), (), {}, box=box_arr,
                      source=ForceFieldSource({}, {}, ()))
    return with_potential(base, model, numbers, label=label)
