"""Message-passing layers over :class:`~chronograd.ml.graph.MolecularGraph` arrays (equinox).

Models are equinox modules, so a model *is* the pytree of its weights: ``jax.grad`` of a loss
through a system reaches them like any force-field parameter. Dense layers are equinox's own
(``eqx.nn.Linear``, ``eqx.nn.MLP``); only the graph aggregation is written here, with
``segment_sum`` over edge lists (no dense adjacency).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "ReLU": jax.nn.relu, "Sigmoid": jax.nn.sigmoid, "Tanh": jnp.tanh,
    "LeakyReLU": jax.nn.leaky_relu, "ELU": jax.nn.elu, "GELU": jax.nn.gelu,
    "Identity": lambda x: x,
}


def mean_over_neighbors(h, graph):
    """[N, F] mean of the senders' features over each node's incoming edges (zero for a node
    without neighbours, as DGL's mean reducer)."""
    n = h.shape[0]
    w = graph.edge_mask.astype(h.dtype)
    summed = jax.ops.segment_sum(h[graph.senders] * w[:, None], graph.receivers,
                                 num_segments=n)
    degree = jax.ops.segment_sum(w, graph.receivers, num_segments=n)
    return summed / jnp.maximum(degree, 1.0)[:, None]


class SAGEConv(eqx.Module):
    """GraphSAGE layer with the mean aggregator (Hamilton, Ying & Leskovec, NeurIPS 2017,
    arXiv:1706.02216) in DGL's form: ``act(W_self h_i + b + W_neigh mean_j h_j)``."""

    fc_self: eqx.nn.Linear
    fc_neigh: eqx.nn.Linear
    activation: str = eqx.field(static=True, default="ReLU")

    def __init__(self, n_in: int, n_out: int, *, activation: str = "ReLU", key):
        k1, k2 = jax.random.split(key)
        self.fc_self = eqx.nn.Linear(n_in, n_out, use_bias=True, key=k1)
        self.fc_neigh = eqx.nn.Linear(n_in, n_out, use_bias=False, key=k2)
        self.activation = activation

    def __call__(self, h, graph):
        neigh = mean_over_neighbors(h, graph)
        out = jax.vmap(self.fc_self)(h) + jax.vmap(self.fc_neigh)(neigh)
        return ACTIVATIONS[self.activation](out)


class SAGEStack(eqx.Module):
    """Several SAGE layers applied in turn: atom embeddings [N, F_out] from features [N, F]."""

    layers: tuple

    def __init__(self, n_in: int, sizes, *, activations=None, key):
        keys = jax.random.split(key, len(sizes))
        activations = activations or ["ReLU"] * len(sizes)
        layers = []
        for size, act, k in zip(sizes, activations, keys, strict=True):
            layers.append(SAGEConv(n_in, size, activation=act, key=k))
            n_in = size
        self.layers = tuple(layers)

    def __call__(self, h, graph):
        for layer in self.layers:
            h = layer(h, graph)
        return h * graph.node_mask[:, None].astype(h.dtype)


def equilibrate_charges(prior, electronegativity, hardness, graph):
    """Partial charges [N] (e) that conserve each component's total formal charge.

    ``q_i = p_i - e_i / s_i - (1 / s_i) (sum_c p - Q_c - sum_c e / s) / sum_c (1 / s)`` over the
    atoms of component c: the minimum of ``sum_i e_i q_i + s_i (q_i - p_i)^2 / 2`` subject to
    ``sum_c q = Q_c`` (electronegativity equalization; Gilson et al., doi:10.1021/ci034148o;
    Wang et al., arXiv:1909.07903, Eq. 15; openff-nagl's regularized form, with priors p).
    Padded atoms get exactly zero.
    """
    mask = graph.node_mask
    safe_s = jnp.where(mask, hardness, 1.0)
    inv_s = jnp.where(mask, 1.0 / safe_s, 0.0)
    e_over_s = jnp.where(mask, electronegativity * inv_s, 0.0)
    p = jnp.where(mask, prior, 0.0)
    n_comp = graph.component_charge.shape[0]
    seg = lambda x: jax.ops.segment_sum(x, graph.component, num_segments=n_comp)  # noqa: E731
    numerator = seg(p) - graph.component_charge - seg(e_over_s)
    denominator = seg(inv_s)
    ratio = numerator / jnp.where(denominator == 0, 1.0, denominator)
    q = p - e_over_s - inv_s * ratio[graph.component]
    return jnp.where(mask, q, 0.0)
