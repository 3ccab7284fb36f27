"""An espaloma-style parameter predictor: a graph network that assigns MM parameters.

Atom embeddings from SAGE convolutions over the molecular graph are pooled symmetrically into
each valence term (Wang et al., espaloma, Chem. Sci. 13, 12016 (2022), doi:10.1039/D2SC02739A;
espaloma-0.3, arXiv:2307.07085): a bond's parameters are ``f(h_i, h_j) + f(h_j, h_i)``, an
angle's ``f(h_i, h_j, h_k) + f(h_k, h_j, h_i)``, a proper torsion's
``f(h_i, h_j, h_k, h_l) + f(h_l, h_k, h_j, h_i)`` (k_n for n = 1..6, phase 0, any sign), an
improper's ``f(h_centre, h_a + h_b + h_c)`` (invariant under the outer atoms' order, as the
SMIRNOFF trefoil needs). Charges use NAGL's readout: a prior, an electronegativity and a
hardness per atom, equilibrated to each component's formal charge
(:func:`~chronograd.ml.layers.equilibrate_charges`). Van der Waals parameters stay the force
field's, as in espaloma-0.3.

Outputs are scaled to their physical ranges so an untrained network starts near typical
values: k_bond = 3e5 exp(o) kJ/mol/nm^2, r0 = 0.13 exp(0.2 o) nm, k_angle = 400 exp(o)
kJ/mol/rad^2, theta0 = pi sigmoid(o + 1.2), torsion k_n = 4 o kJ/mol, improper k = 4 o kJ/mol,
hardness = softplus(o) + 0.1.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from chronograd.ml.layers import ACTIVATIONS, SAGEStack, equilibrate_charges

N_PERIODICITIES = 6
# Atom features of the predictor (openff-nagl's names; see chronograd.ml.atom_features).
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "F", "S", "Cl")
TERM_KINDS = ("bonds", "angles", "propers", "impropers", "charges")


@dataclasses.dataclass(frozen=True)
class PredictorConfig:
    """What shapes a predictor (saved as JSON beside its weights)."""

    elements: tuple = DEFAULT_ELEMENTS
    connectivity: tuple = (1, 2, 3, 4)
    hidden: int = 64
    layers: int = 3
    readout: int = 64
    activation: str = "ReLU"
    seed: int = 0

    def feature_spec(self) -> list[dict]:
        return [{"name": "atomic_element", "categories": list(self.elements)},
                {"name": "atom_connectivity", "categories": list(self.connectivity)},
                {"name": "atom_average_formal_charge"},
                *({"name": "atom_in_ring_of_size", "ring_size": n} for n in (3, 4, 5, 6))]

    @property
    def n_features(self) -> int:
        return len(self.elements) + len(self.connectivity) + 1 + 4

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> PredictorConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown predictor settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class TermIndex(NamedTuple):
    """Atom indices the predictor pools over (rows padded with index N; masks mark real rows).

    bonds [B, 2]; angles [A, 3]; propers [T, 4] (each torsion once: the system repeats it for
    n = 1..6); impropers [I, 4] (centre first, as the trefoil rows).
    """

    bonds: jnp.ndarray
    angles: jnp.ndarray
    propers: jnp.ndarray
    impropers: jnp.ndarray


def _mlp(n_in, n_out, width, act, key):
    return eqx.nn.MLP(n_in, n_out, width, 1, activation=ACTIVATIONS[act], key=key)


class ParameterPredictor(eqx.Module):
    """Graph network -> {term kind: parameter arrays}; an equinox module (its weights are θ)."""

    embed: SAGEStack
    bond_head: eqx.nn.MLP
    angle_head: eqx.nn.MLP
    proper_head: eqx.nn.MLP
    improper_head: eqx.nn.MLP
    charge_head: eqx.nn.MLP

    def __init__(self, config: PredictorConfig):
        keys = jax.random.split(jax.random.PRNGKey(config.seed), 6)
        f, w, act = config.hidden, config.readout, config.activation
        self.embed = SAGEStack(config.n_features, [f] * config.layers,
                               activations=[act] * config.layers, key=keys[0])
        self.bond_head = _mlp(2 * f, 2, w, act, keys[1])
        self.angle_head = _mlp(3 * f, 2, w, act, keys[2])
        self.proper_head = _mlp(4 * f, N_PERIODICITIES, w, act, keys[3])
        self.improper_head = _mlp(2 * f, 1, w, act, keys[4])
        self.charge_head = _mlp(f, 3, w, act, keys[5])

    def __call__(self, graph, index: TermIndex) -> dict:
        """Parameters in chronograd's units: {"bonds": (k [B], length [B]), "angles":
        (k [A], angle [A]), "propers": k [T, 6], "impropers": k [I], "charges": q [N]}."""
        h = self.embed(graph.node_features, graph)
        h = jnp.concatenate([h, jnp.zeros((1, h.shape[1]), h.dtype)])  # row N: padding

        def pooled(head, atoms, orders):
            rows = [jnp.concatenate([h[atoms[:, a]] for a in order], axis=1) for order in orders]
            return sum(jax.vmap(head)(r) for r in rows)

        b = pooled(self.bond_head, index.bonds, ((0, 1), (1, 0)))
        a = pooled(self.angle_head, index.angles, ((0, 1, 2), (2, 1, 0)))
        t = pooled(self.proper_head, index.propers, ((0, 1, 2, 3), (3, 2, 1, 0)))
        centre = h[index.impropers[:, 0]]
        outer = h[index.impropers[:, 1]] + h[index.impropers[:, 2]] + h[index.impropers[:, 3]]
        i = jax.vmap(self.improper_head)(jnp.concatenate([centre, outer], axis=1))
        c = jax.vmap(self.charge_head)(h[:-1])
        charges = equilibrate_charges(c[:, 0], c[:, 1], jax.nn.softplus(c[:, 2]) + 0.1, graph)
        return {
            "bonds": (3e5 * jnp.exp(b[:, 0]), 0.13 * jnp.exp(0.2 * b[:, 1])),
            "angles": (400.0 * jnp.exp(a[:, 0]), jnp.pi * jax.nn.sigmoid(a[:, 1] + 1.2)),
            "propers": 4.0 * t,
            "impropers": 4.0 * i[:, 0],
            "charges": charges,
        }
