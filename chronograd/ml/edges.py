"""Differentiable graph building for learned potentials: edges from pair lists, smooth cutoff
envelopes and radial bases.

A graph-network potential sees an atom's neighbours within a cutoff. The pairs come from the
system's pair policy (an explicit i < j candidate list for a molecule in vacuum, a neighbor list
for a periodic box: ``space/neighbor_list.py``), never from a dense N x N matrix. Each unordered
pair becomes two directed edges; an edge's weight is a smooth function of its length that
vanishes, with its first derivative, at the cutoff, so energies and forces are continuous when
an atom crosses it. Every function here is pure and differentiable in positions; padded pairs
(index N) and pairs beyond the cutoff carry weight exactly 0 (the double-``where`` trick keeps
their gradients finite).

Envelopes and bases as in SchNet (Schütt et al., J. Chem. Phys. 148, 241722 (2018),
doi:10.1063/1.5019779), DimeNet (Gasteiger et al., ICLR 2020, arXiv:2003.03123) and PaiNN
(Schütt et al., ICML 2021, arXiv:2102.03150).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from chronograd.space.periodic import minimum_image

ENVELOPES = ("cosine", "polynomial")
BASES = ("gaussian", "bessel")


def cosine_envelope(r, cutoff):
    """Behler's cosine cutoff 0.5 (cos(pi r / rc) + 1) for r < rc, else 0. Its value and first
    derivative vanish at rc."""
    x = jnp.clip(r / cutoff, 0.0, 1.0)
    return 0.5 * (jnp.cos(jnp.pi * x) + 1.0)


def polynomial_envelope(r, cutoff, p: int = 6):
    """DimeNet's polynomial envelope 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2),
    x = r / rc (0 beyond rc). Value, first and second derivatives vanish at rc."""
    x = jnp.clip(r / cutoff, 0.0, 1.0)
    return (1.0 - 0.5 * (p + 1) * (p + 2) * x**p + p * (p + 2) * x ** (p + 1)
            - 0.5 * p * (p + 1) * x ** (p + 2))


def envelope(name: str, r, cutoff):
    """The envelope called ``name`` (one of ENVELOPES) at distances ``r`` (nm)."""
    if name == "cosine":
        return cosine_envelope(r, cutoff)
    if name == "polynomial":
        return polynomial_envelope(r, cutoff)
    raise ValueError(f"unknown envelope {name!r}; known: {', '.join(ENVELOPES)}")


def gaussian_basis(r, cutoff, n: int):
    """[..., n] Gaussians exp(-gamma (r - mu_k)^2), centres mu_k evenly over [0, rc],
    gamma = 1 / (2 spacing^2) (SchNet's expansion)."""
    mu = jnp.linspace(0.0, cutoff, n)
    spacing = cutoff / max(n - 1, 1)
    return jnp.exp(-0.5 * ((r[..., None] - mu) / spacing) ** 2)


def bessel_basis(r, cutoff, n: int):
    """[..., n] spherical Bessel functions sqrt(2/rc) sin(k pi r / rc) / r, k = 1..n (DimeNet);
    at r = 0 (padding only) the finite limit sqrt(2/rc) k pi / rc, with a finite gradient."""
    k = jnp.arange(1, n + 1) * jnp.pi / cutoff
    safe = r > 1e-9
    rs = jnp.where(safe, r, 1.0)[..., None]
    value = jnp.sin(k * rs) / rs
    return jnp.sqrt(2.0 / cutoff) * jnp.where(safe[..., None], value, k)


def radial_basis(name: str, r, cutoff, n: int):
    """The radial basis called ``name`` (one of BASES): [..., n]."""
    if name == "gaussian":
        return gaussian_basis(r, cutoff, n)
    if name == "bessel":
        return bessel_basis(r, cutoff, n)
    raise ValueError(f"unknown radial basis {name!r}; known: {', '.join(BASES)}")


class Edges(NamedTuple):
    """Directed edges of a graph built from positions (each unordered pair twice).

    senders, receivers [E] int (index N for padding); vectors [E, 3] x_sender - x_receiver
    (minimum image), nm; distances [E] nm (0 for padding); mask [E] float, 1 for real edges
    within the cutoff.
    """

    senders: jnp.ndarray
    receivers: jnp.ndarray
    vectors: jnp.ndarray
    distances: jnp.ndarray
    mask: jnp.ndarray

    def unit_vectors(self):
        """[E, 3] vectors / distances, zero (with a zero gradient) on padded edges."""
        d = jnp.where(self.mask > 0, self.distances, 1.0)
        return jnp.where(self.mask[:, None] > 0, self.vectors / d[:, None], 0.0)


def edges_from_pairs(positions, box, i, j, cutoff) -> Edges:
    """Directed edges from unordered pairs ``i``, ``j`` (equal-shaped or broadcastable int
    arrays; index N marks padding) within ``cutoff`` (nm); ``box`` [3, 3] or None.

    Differentiable in ``positions`` and ``box``; pairs at or beyond the cutoff and padding get
    mask 0 and distance 0.
    """
    n = positions.shape[0]
    i, j = jnp.broadcast_arrays(i, j)
    i, j = i.reshape(-1), j.reshape(-1)
    real = (i < n) & (j < n) & (i != j)
    ii, jj = jnp.minimum(i, n - 1), jnp.minimum(j, n - 1)
    dr = minimum_image(positions[jj] - positions[ii], box)
    sq = jnp.sum(dr * dr, axis=-1)
    inside = real & (sq < cutoff * cutoff) & (sq > 0)
    r = jnp.where(inside, jnp.sqrt(jnp.where(inside, sq, 1.0)), 0.0)
    dr = jnp.where(inside[:, None], dr, 0.0)
    pad = jnp.full_like(i, n)
    i, j = jnp.where(inside, i, pad), jnp.where(inside, j, pad)
    mask = inside.astype(positions.dtype)
    # edge j -> i carries x_j - x_i; edge i -> j carries x_i - x_j
    return Edges(jnp.concatenate([j, i]), jnp.concatenate([i, j]),
                 jnp.concatenate([dr, -dr]), jnp.concatenate([r, r]),
                 jnp.concatenate([mask, mask]))


def edge_weights(edges: Edges, cutoff, name: str = "cosine"):
    """[E] smooth edge weights envelope(r) * mask: 1 at r = 0, 0 (value and slope) at rc."""
    return envelope(name, edges.distances, cutoff) * edges.mask
