"""Holonomic distance constraints: SHAKE/RATTLE solved per cluster by Newton's method (M-SHAKE).

Constraints are grouped into clusters (connected components: a rigid water's three distances,
a methyl group's three C-H bonds). Each cluster's Lagrange multipliers solve a small dense
system, batched over clusters, so a rigid water is solved to machine precision in a few Newton
iterations (what SETTLE gives analytically) and bonds to hydrogen likewise. Reference: V.
Kraeutler, W. F. van Gunsteren, P. H. Huenenberger, J. Comput. Chem. 22, 501 (2001),
doi:10.1002/1096-987X(20010415)22:5<501::AID-JCC1010>3.0.CO;2-V.

Position step (SHAKE): x' is moved along the old bond vectors, x_i += m_i^-1 sum_k lambda_k
s_ik r_k(old), until |r_c(x')| = d_c for every constraint. Velocity step (RATTLE): remove the
velocity components along the current bond vectors, so that (v_i - v_j) . r_ij = 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError

MAX_CLUSTER = 16  # constraints per cluster (padded); larger clusters are refused


class Constraints(NamedTuple):
    """Static constraint data (NumPy; captured by the integrators as constants).

    pairs: [C, 2] atoms; distances: [C] nm; clusters: [K, S] constraint indices padded with C
    (a dummy); coupling: [K, S, S] with coupling[k, c, j] = w_ic s_j,ic - w_jc s_j,jc (w the
    inverse masses; s_j,a = +1 if a is the first atom of constraint j, -1 if the second).
    """

    pairs: np.ndarray
    distances: np.ndarray
    clusters: np.ndarray
    coupling: np.ndarray
    inv_mass: np.ndarray

    @property
    def n(self) -> int:
        return int(self.pairs.shape[0])


def build_constraints(pairs, distances, masses) -> Constraints | None:
    """Cluster the constraints and precompute their coupling; None if there are none."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    distances = np.asarray(distances, np.float64)
    masses = np.asarray(masses, np.float64)
    if pairs.shape[0] == 0:
        return None
    massless = [int(a) for a in pairs.ravel() if not masses[a] > 0]
    if massless:
        a = massless[0]
        raise InputError(f"a constraint involves atom {a}, whose mass is {masses[a]} amu;"
                         " constrained atoms need a positive mass"
                         + (" (a virtual site or a fixed particle cannot be constrained)"
                            if masses[a] == 0 else ""))
    inv_mass = np.where(masses > 0, 1.0 / np.where(masses > 0, masses, 1.0), 0.0)
    # union-find over atoms -> clusters of constraints
    parent = list(range(len(masses)))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in pairs:
        parent[find(int(i))] = find(int(j))
    groups: dict[int, list[int]] = {}
    for c, (i, _) in enumerate(pairs):
        groups.setdefault(find(int(i)), []).append(c)
    size = max(len(g) for g in groups.values())
    if size > MAX_CLUSTER:
        big = max(groups.values(), key=len)
        raise InputError(f"{size} constraints are coupled in one cluster (around atoms"
                         f" {sorted({int(a) for c in big for a in pairs[c]})[:8]}...); at most"
                         f" {MAX_CLUSTER} are supported: constrain bonds to hydrogen only")
    n_con = pairs.shape[0]
    clusters = np.full((len(groups), size), n_con, np.int64)
    coupling = np.zeros((len(groups), size, size))
    for k, members in enumerate(groups.values()):
        clusters[k, : len(members)] = members
        for a, c in enumerate(members):
            ic, jc = pairs[c]
            for b, j in enumerate(members):
                ij, jj = pairs[j]
                s_i = (1.0 if ic == ij else 0.0) - (1.0 if ic == jj else 0.0)
                s_j = (1.0 if jc == ij else 0.0) - (1.0 if jc == jj else 0.0)
                coupling[k, a, b] = inv_mass[ic] * s_i - inv_mass[jc] * s_j
    return Constraints(pairs, distances, clusters, coupling, inv_mass)


def bond_vectors(x, pairs, box):
    from chronograd.space.periodic import minimum_image

    r = x[pairs[:, 0]] - x[pairs[:, 1]]
    return r if box is None else minimum_image(r, box)


def _padded(values, clusters, fill=0.0):
    pad = jnp.concatenate([values, jnp.full((1,) + values.shape[1:], fill, values.dtype)])
    return pad[clusters]


def _apply(multipliers_per_constraint, r_old, con: Constraints, n_atoms):
    """Per-atom displacement inv_m_a * sum_k lambda_k s_ka r_k (before the 1/m factor)."""
    f = multipliers_per_constraint[:, None] * r_old
    out = jnp.zeros((n_atoms, 3), f.dtype)
    out = out.at[con.pairs[:, 0]].add(f).at[con.pairs[:, 1]].add(-f)
    return out * jnp.asarray(con.inv_mass, f.dtype)[:, None]


def _scatter(per_cluster, con: Constraints):
    flat = jnp.zeros(con.n + 1, per_cluster.dtype).at[con.clusters.ravel()].add(
        per_cluster.ravel())
    return flat[: con.n]


def shake(x_new, x_old, con: Constraints, box=None, *, iterations: int = 12):
    """Positions ``x_new`` [N, 3] moved along the bond vectors of ``x_old`` so every
    constraint holds (Newton iterations per cluster; converges quadratically)."""
    r_old = bond_vectors(x_old, con.pairs, box)
    r0 = _padded(r_old, con.clusters)  # [K, S, 3]
    d2 = _padded(jnp.asarray(con.distances, x_new.dtype) ** 2, con.clusters, 1.0)
    valid = jnp.asarray(con.clusters < con.n)
    coupling = jnp.asarray(con.coupling, x_new.dtype)
    r_start = _padded(bond_vectors(x_new, con.pairs, box), con.clusters)
    eye = jnp.eye(con.clusters.shape[1], dtype=x_new.dtype)

    def newton(lam, _):
        # r_c(lambda) = r_c' + sum_j lambda_j coupling[c, j] r0_j
        r = r_start + jnp.einsum("kcj,kj,kjx->kcx", coupling, lam, r0)
        residual = jnp.where(valid, jnp.sum(r * r, -1) - d2, 0.0)
        jac = 2.0 * jnp.einsum("kcx,kcj,kjx->kcj", r, coupling, r0)
        jac = jnp.where(valid[:, :, None] & valid[:, None, :], jac, eye)
        return lam - jnp.linalg.solve(jac, residual[..., None])[..., 0], None

    lam0 = jnp.zeros(con.clusters.shape, x_new.dtype)
    lam, _ = jax.lax.scan(newton, lam0, None, length=iterations)
    return x_new + _apply(_scatter(lam, con), r_old, con, x_new.shape[0])


def rattle_velocities(v, x, con: Constraints, box=None):
    """Velocities [N, 3] with the components along every constraint removed (one linear solve
    per cluster): (v_i - v_j) . r_ij = 0."""
    r = bond_vectors(x, con.pairs, box)
    rc = _padded(r, con.clusters)
    valid = jnp.asarray(con.clusters < con.n)
    coupling = jnp.asarray(con.coupling, v.dtype)
    vrel = _padded(v[con.pairs[:, 0]] - v[con.pairs[:, 1]], con.clusters)
    rhs = jnp.where(valid, -jnp.sum(vrel * rc, -1), 0.0)
    mat = coupling * jnp.einsum("kcx,kjx->kcj", rc, rc)
    eye = jnp.eye(con.clusters.shape[1], dtype=v.dtype)
    mat = jnp.where(valid[:, :, None] & valid[:, None, :], mat, eye)
    mu = jnp.linalg.solve(mat, rhs[..., None])[..., 0]
    return v + _apply(_scatter(mu, con), r, con, v.shape[0])


def constraint_error(x, con: Constraints, box=None):
    """Largest relative deviation |r_c| / d_c - 1 (a diagnostic)."""
    r = bond_vectors(x, con.pairs, box)
    return jnp.max(jnp.abs(jnp.linalg.norm(r, axis=-1) / con.distances - 1.0))
