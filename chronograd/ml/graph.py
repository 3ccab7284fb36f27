"""Molecular graphs as padded arrays (setup layer builds them; compute layer consumes them).

A :class:`MolecularGraph` is a pytree of arrays: node features, directed edges (each bond in both
directions), masks for padding, and the connected component of every node with its total formal
charge (charge models conserve charge per component, as openff-nagl does). Graphs of several
molecules are padded to a common size and stacked (:func:`stack_graphs`), so one compiled
program evaluates a whole batch with ``jax.vmap``; padded nodes and edges contribute exactly
zero.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MolecularGraph(NamedTuple):
    """Arrays of one molecule (or, stacked, of a batch with a leading axis).

    node_features [N, F] float; senders, receivers [E] int (edge k carries sender -> receiver);
    node_mask [N], edge_mask [E] bool; component [N] int (connected component of each node,
    padded nodes in the last, empty one); component_charge [C] float (total formal charge, e).
    """

    node_features: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    node_mask: np.ndarray
    edge_mask: np.ndarray
    component: np.ndarray
    component_charge: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(np.sum(self.node_mask))


def connected_components(n: int, bonds: np.ndarray) -> np.ndarray:
    """[n] component index of every atom (components numbered by their lowest atom)."""
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.asarray(bonds, int).reshape(-1, 2):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels.astype(np.int32)


def molecular_graph(node_features: np.ndarray, bonds: np.ndarray,
                    formal_charges: np.ndarray) -> MolecularGraph:
    """The graph of one molecule from node features [N, F], bonds [B, 2] and formal charges."""
    x = np.asarray(node_features, float)
    n = x.shape[0]
    bonds = np.asarray(bonds, np.int32).reshape(-1, 2)
    senders = np.concatenate([bonds[:, 0], bonds[:, 1]])
    receivers = np.concatenate([bonds[:, 1], bonds[:, 0]])
    component = connected_components(n, bonds)
    n_comp = int(component.max()) + 1 if n else 0
    charge = np.zeros(n_comp + 1)
    np.add.at(charge, component, np.asarray(formal_charges, float))
    return MolecularGraph(x, senders, receivers, np.ones(n, bool),
                          np.ones(senders.size, bool), component, charge)


def pad_graph(graph: MolecularGraph, n_nodes: int, n_edges: int,
              n_components: int) -> MolecularGraph:
    """``graph`` padded to fixed sizes: padded edges (masked: they carry nothing) point at node
    ``n_nodes - 1``; padded nodes belong to the last component, whose total charge is zero."""
    n, e, c = len(graph.node_mask), len(graph.edge_mask), len(graph.component_charge)
    if n > n_nodes or e > n_edges or c > n_components:
        raise ValueError(f"graph of {n} nodes, {e} edges, {c} components does not fit "
                         f"{n_nodes}, {n_edges}, {n_components}")
    x = np.zeros((n_nodes, graph.node_features.shape[1]))
    x[:n] = graph.node_features
    sink = n_nodes - 1
    senders = np.full(n_edges, sink, np.int32)
    senders[:e] = graph.senders
    receivers = np.full(n_edges, sink, np.int32)
    receivers[:e] = graph.receivers
    component = np.full(n_nodes, n_components - 1, np.int32)
    component[:n] = graph.component
    charge = np.zeros(n_components)
    charge[: c - 1] = graph.component_charge[: c - 1]
    return MolecularGraph(x, senders, receivers, np.arange(n_nodes) < n,
                          np.arange(n_edges) < e, component, charge)


def stack_graphs(graphs: list[MolecularGraph]) -> MolecularGraph:
    """Graphs padded to the largest of the batch and stacked."""
    n = max(len(g.node_mask) for g in graphs)
    e = max(len(g.edge_mask) for g in graphs)
    c = max(len(g.component_charge) for g in graphs)
    padded = [pad_graph(g, n, e, c) for g in graphs]
    return MolecularGraph(*(np.stack(leaves) for leaves in zip(*padded, strict=True)))
