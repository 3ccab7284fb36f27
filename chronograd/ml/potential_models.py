"""Graph-network potentials: per-atom energies from species and a distance graph (equinox).

Two architectures, both functions of :class:`~chronograd.ml.edges.Edges` built from the pair
policy, so forces are ``-dU/dx`` by autodiff through the edge vectors:

- :class:`SchNet` (invariant; Schütt et al., J. Chem. Phys. 148, 241722 (2018),
  doi:10.1063/1.5019779): continuous-filter convolutions whose filters are an MLP of a radial
  basis, multiplied by a smooth cutoff envelope.
- :class:`PaiNN` (equivariant; Schütt, Unke & Gastegger, ICML 2021, arXiv:2102.03150):
  scalar features s [N, F] and vector features v [N, 3, F] exchanged along edges through the
  unit vectors; rotating the input rotates v and leaves s (and the energy) unchanged.

Messages are gathered from senders and summed into receivers with ``segment_sum`` (no dense
adjacency). The energy is ``sum_i scale * readout(s_i) + shift[species_i]`` over real atoms
(species >= 0), kJ/mol. Why written here and not with e3nn-jax: PaiNN needs only vectors
(l = 1), which plain arrays express in a few lines; e3nn-jax's irreps machinery pays off for
l >= 2 models (NequIP, MACE).
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp

from chronograd.ml.edges import BASES, ENVELOPES, Edges, edge_weights, radial_basis

ARCHITECTURES = ("schnet", "painn")
DEFAULT_ELEMENTS = (1, 6, 7, 8, 9, 16, 17)  # H C N O F S Cl, atomic numbers


@dataclasses.dataclass(frozen=True)
class PotentialConfig:
    """What shapes a graph-network potential (saved as JSON beside its weights).

    cutoff nm; hidden features F; layers (interaction blocks); n_rbf radial functions;
    energy_scale kJ/mol per unit of network output.
    """

    architecture: str = "schnet"
    elements: tuple = DEFAULT_ELEMENTS
    cutoff: float = 0.5
    hidden: int = 32
    layers: int = 3
    n_rbf: int = 16
    basis: str = "gaussian"
    envelope: str = "cosine"
    energy_scale: float = 10.0
    seed: int = 0

    def __post_init__(self):
        for name, value, known in (("architecture", self.architecture, ARCHITECTURES),
                                   ("basis", self.basis, BASES),
                                   ("envelope", self.envelope, ENVELOPES)):
            if value not in known:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(known)}")
        if not (self.cutoff > 0 and math.isfinite(self.cutoff)):
            raise ValueError(f"cutoff must be a positive length in nm, got {self.cutoff}")
        if min(self.hidden, self.layers, self.n_rbf) < 1:
            raise ValueError("hidden, layers and n_rbf must be at least 1")

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> PotentialConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown potential settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def shifted_softplus(x):
    """softplus(x) - log 2: SchNet's activation (zero at zero)."""
    return jax.nn.softplus(x) - math.log(2.0)


def _gather(h, index):
    """Rows ``index`` of ``h`` with index N (padding) reading zeros."""
    pad = jnp.zeros((1,) + h.shape[1:], h.dtype)
    return jnp.concatenate([h, pad])[index]


def _scatter(values, receivers, n):
    """Sum edge values into their receivers (padding, index N, dropped)."""
    return jax.ops.segment_sum(values, receivers, num_segments=n + 1)[:n]


def _linear(layer, x):
    """An eqx.nn.Linear over the last axis of ``x`` of any rank."""
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


class _Readout(eqx.Module):
    """Atom energies from scalar features: a two-layer MLP plus a per-species shift."""

    hidden: eqx.nn.Linear
    out: eqx.nn.Linear
    shift: jax.Array
    scale: float = eqx.field(static=True)

    def __init__(self, f, n_species, scale, key):
        k1, k2 = jax.random.split(key)
        self.hidden = eqx.nn.Linear(f, max(f // 2, 1), key=k1)
        self.out = eqx.nn.Linear(max(f // 2, 1), 1, key=k2)
        self.shift = jnp.zeros(n_species)
        self.scale = float(scale)

    def __call__(self, s, species):
        e = _linear(self.out, shifted_softplus(_linear(self.hidden, s)))[:, 0]
        real = species >= 0
        e = self.scale * e + self.shift[jnp.maximum(species, 0)]
        return jnp.where(real, e, 0.0)


def _common_parts(config: PotentialConfig):
    """(block keys, embedding [elements, F], readout) shared by both architectures."""
    keys = jax.random.split(jax.random.PRNGKey(config.seed), config.layers + 2)
    f, n = config.hidden, len(config.elements)
    embedding = jax.random.normal(keys[0], (n, f)) / math.sqrt(f)
    return keys[2:], embedding, _Readout(f, n, config.energy_scale, keys[1])


def _embed(embedding, species, edges: Edges, c: PotentialConfig):
    """(atom embeddings [N, F] (padded atoms zero), radial basis [E, n_rbf], weights [E])."""
    h = embedding[jnp.maximum(species, 0)] * (species >= 0)[:, None]
    rbf = radial_basis(c.basis, edges.distances, c.cutoff, c.n_rbf)
    return h, rbf, edge_weights(edges, c.cutoff, c.envelope)


class _SchNetInteraction(eqx.Module):
    filter_in: eqx.nn.Linear
    filter_out: eqx.nn.Linear
    atom_in: eqx.nn.Linear
    atom_out: eqx.nn.Linear
    dense: eqx.nn.Linear

    def __init__(self, f, n_rbf, key):
        k = jax.random.split(key, 5)
        self.filter_in = eqx.nn.Linear(n_rbf, f, key=k[0])
        self.filter_out = eqx.nn.Linear(f, f, key=k[1])
        self.atom_in = eqx.nn.Linear(f, f, use_bias=False, key=k[2])
        self.atom_out = eqx.nn.Linear(f, f, key=k[3])
        self.dense = eqx.nn.Linear(f, f, key=k[4])

    def __call__(self, h, edges: Edges, rbf, weight):
        filters = _linear(self.filter_out, shifted_softplus(_linear(self.filter_in, rbf)))
        messages = _gather(_linear(self.atom_in, h), edges.senders) * (filters * weight[:, None])
        v = _scatter(messages, edges.receivers, h.shape[0])
        return h + _linear(self.dense, shifted_softplus(_linear(self.atom_out, v)))


class SchNet(eqx.Module):
    """Invariant continuous-filter convolution network (see the module docstring)."""

    embedding: jax.Array
    interactions: tuple
    readout: _Readout
    config: PotentialConfig = eqx.field(static=True)

    def __init__(self, config: PotentialConfig):
        keys, self.embedding, self.readout = _common_parts(config)
        self.interactions = tuple(_SchNetInteraction(config.hidden, config.n_rbf, k)
                                  for k in keys)
        self.config = config

    def features(self, species, edges: Edges):
        """Scalar atom features [N, F] (padded atoms zero) and no vector features."""
        h, rbf, w = _embed(self.embedding, species, edges, self.config)
        for block in self.interactions:
            h = block(h, edges, rbf, w)
        return h, None

    def __call__(self, species, edges: Edges):
        """Atom energies [N], kJ/mol (0 for padded atoms)."""
        return self.readout(self.features(species, edges)[0], species)


class _PaiNNBlock(eqx.Module):
    phi_in: eqx.nn.Linear
    phi_out: eqx.nn.Linear
    filter: eqx.nn.Linear
    u: eqx.nn.Linear
    v: eqx.nn.Linear
    update_in: eqx.nn.Linear
    update_out: eqx.nn.Linear

    def __init__(self, f, n_rbf, key):
        k = jax.random.split(key, 7)
        self.phi_in = eqx.nn.Linear(f, f, key=k[0])
        self.phi_out = eqx.nn.Linear(f, 3 * f, key=k[1])
        self.filter = eqx.nn.Linear(n_rbf, 3 * f, key=k[2])
        self.u = eqx.nn.Linear(f, f, use_bias=False, key=k[3])
        self.v = eqx.nn.Linear(f, f, use_bias=False, key=k[4])
        self.update_in = eqx.nn.Linear(2 * f, f, key=k[5])
        self.update_out = eqx.nn.Linear(f, 3 * f, key=k[6])

    def __call__(self, s, vec, edges: Edges, rbf, weight, unit):
        n, f = s.shape
        # message: s [N, F], vec [N, 3, F]
        x = _linear(self.phi_out, jax.nn.silu(_linear(self.phi_in, s)))
        x = _gather(x, edges.senders) * (_linear(self.filter, rbf) * weight[:, None])
        a, b, c = x[:, :f], x[:, f:2 * f], x[:, 2 * f:]
        s = s + _scatter(a, edges.receivers, n)
        dv = _gather(vec, edges.senders) * b[:, None, :] + unit[:, :, None] * c[:, None, :]
        vec = vec + _scatter(dv, edges.receivers, n)
        # update
        uv, vv = _linear(self.u, vec), _linear(self.v, vec)
        norm = jnp.sqrt(jnp.sum(vv * vv, axis=1) + 1e-8)
        y = _linear(self.update_out, jax.nn.silu(_linear(self.update_in,
                                                         jnp.concatenate([s, norm], -1))))
        a_vv, a_sv, a_ss = y[:, :f], y[:, f:2 * f], y[:, 2 * f:]
        vec = vec + a_vv[:, None, :] * uv
        s = s + a_sv * jnp.sum(uv * vv, axis=1) + a_ss
        return s, vec


class PaiNN(eqx.Module):
    """Equivariant message passing with scalar and vector features (see the module docstring)."""

    embedding: jax.Array
    blocks: tuple
    readout: _Readout
    config: PotentialConfig = eqx.field(static=True)

    def __init__(self, config: PotentialConfig):
        keys, self.embedding, self.readout = _common_parts(config)
        self.blocks = tuple(_PaiNNBlock(config.hidden, config.n_rbf, k) for k in keys)
        self.config = config

    def features(self, species, edges: Edges):
        """(scalar features [N, F], vector features [N, 3, F]); padded atoms zero."""
        real = species >= 0
        s, rbf, w = _embed(self.embedding, species, edges, self.config)
        vec = jnp.zeros((s.shape[0], 3, s.shape[1]), s.dtype)
        unit = edges.unit_vectors()
        for block in self.blocks:
            s, vec = block(s, vec, edges, rbf, w, unit)
        return s * real[:, None], vec * real[:, None, None]

    def __call__(self, species, edges: Edges):
        """Atom energies [N], kJ/mol (0 for padded atoms)."""
        return self.readout(self.features(species, edges)[0], species)


def build_potential(config: PotentialConfig):
    """A freshly initialised network for ``config`` (weights from ``config.seed``)."""
    return {"schnet": SchNet, "painn": PaiNN}[config.architecture](config)
