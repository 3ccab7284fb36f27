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

Rigid three-site waters (a triangle of constraints with two equal distances from one atom and
equal masses on the other two) take the position step in closed form instead, by SETTLE (S.
Miyamoto, P. A. Kollman, J. Comput. Chem. 13, 952 (1992), doi:10.1002/jcc.540130805): the
same solution as SHAKE's (the rigid geometry whose displacements lie along the old bonds, the
centre of mass kept), with no iterations; being closed-form JAX it is differentiable to any
order, so trajectory gradients go through it. A triangle SETTLE cannot serve (unequal masses,
unequal distances) keeps M-SHAKE, and the reason is logged.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError

MAX_CLUSTER = 16  # constraints per cluster (padded); larger clusters are refused
log = logging.getLogger("chronograd.dynamics")


class Settle(NamedTuple):
    """Rigid waters solved by SETTLE: atoms [W, 3] (apex, then the two equal-mass atoms),
    apex-to-side distance d_ab [W] and side-to-side distance d_bc [W] (nm), masses m_a, m_b
    [W] (amu)."""

    atoms: np.ndarray
    d_ab: np.ndarray
    d_bc: np.ndarray
    m_a: np.ndarray
    m_b: np.ndarray


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
    settle: Settle | None = None  # rigid waters; their clusters are left out of shake_clusters
    shake_clusters: np.ndarray | None = None  # indices of the clusters SHAKE iterates

    @property
    def n(self) -> int:
        return int(self.pairs.shape[0])


def _settle_triangle(members, pairs, distances, masses):
    """(apex, b, c, d_ab, d_bc) when a 3-constraint cluster is a SETTLE water, else the reason
    it is not (a string); None when the cluster is not a triangle at all."""
    if len(members) != 3:
        return None
    atoms = sorted({int(a) for c in members for a in pairs[c]})
    if len(atoms) != 3:
        return None
    degree = {a: [c for c in members if a in pairs[c]] for a in atoms}
    for apex in atoms:
        b, c = [a for a in atoms if a != apex]
        d1, d2 = (float(distances[k]) for k in degree[apex])
        side = next(k for k in members if apex not in pairs[k])
        if abs(d1 - d2) > 1e-9 * max(d1, d2):
            continue
        d_bc = float(distances[side])
        if not masses[b] == masses[c]:
            return (f"rigid cluster of atoms {atoms}: masses of atoms {b} and {c} differ"
                    f" ({masses[b]} vs {masses[c]} amu)")
        if not 0 < d_bc < 2 * d1:
            return f"rigid cluster of atoms {atoms}: distances {d1}, {d1}, {d_bc} nm"
        return apex, b, c, d1, d_bc
    return f"rigid cluster of atoms {atoms}: no atom has two equal constraint distances"


def build_constraints(pairs, distances, masses, *, settle: bool = True) -> Constraints | None:
    """Cluster the constraints and precompute their coupling; None if there are none.
    ``settle``: solve rigid waters by SETTLE (False: every cluster by M-SHAKE)."""
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
    waters, shaken, reasons = [], [], []
    for k, members in enumerate(groups.values()):
        found = _settle_triangle(members, pairs, distances, masses) if settle else None
        if isinstance(found, tuple):
            waters.append(found)
        else:
            shaken.append(k)
            if isinstance(found, str):
                reasons.append(found)
    if reasons:
        log.info("%d rigid 3-atom clusters use M-SHAKE instead of SETTLE; first: %s",
                 len(reasons), reasons[0])
    fast = None
    if waters:
        w = np.asarray([t[:3] for t in waters], np.int64)
        fast = Settle(w, np.asarray([t[3] for t in waters]), np.asarray([t[4] for t in waters]),
                      masses[w[:, 0]], masses[w[:, 1]])
    return Constraints(pairs, distances, clusters, coupling, inv_mass, fast,
                       np.asarray(shaken, np.int64))


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


def _scatter(per_cluster, con: Constraints, clusters=None):
    """Per-constraint values from per-cluster slots (``clusters``: default all of them)."""
    clusters = con.clusters if clusters is None else clusters
    flat = jnp.zeros(con.n + 1, per_cluster.dtype).at[clusters.ravel()].add(
        per_cluster.ravel())
    return flat[: con.n]


def shake(x_new, x_old, con: Constraints, box=None, *, iterations: int = 12):
    """Positions ``x_new`` [N, 3] moved along the bond vectors of ``x_old`` so every
    constraint holds: rigid waters by SETTLE (closed form), other clusters by Newton
    iterations per cluster (M-SHAKE; converges quadratically)."""
    x = x_new
    if con.settle is not None:
        x = x + settle_displacement(x_new, x_old, con.settle, box)
    sel = con.shake_clusters
    if sel is not None and sel.size == 0:
        return x
    clusters = con.clusters if sel is None else con.clusters[sel]
    coupling_np = con.coupling if sel is None else con.coupling[sel]
    r_old = bond_vectors(x_old, con.pairs, box)
    r0 = _padded(r_old, clusters)  # [K, S, 3]
    d2 = _padded(jnp.asarray(con.distances, x_new.dtype) ** 2, clusters, 1.0)
    valid = jnp.asarray(clusters < con.n)
    coupling = jnp.asarray(coupling_np, x_new.dtype)
    r_start = _padded(bond_vectors(x_new, con.pairs, box), clusters)
    eye = jnp.eye(clusters.shape[1], dtype=x_new.dtype)

    def newton(lam, _):
        # r_c(lambda) = r_c' + sum_j lambda_j coupling[c, j] r0_j
        r = r_start + jnp.einsum("kcj,kj,kjx->kcx", coupling, lam, r0)
        residual = jnp.where(valid, jnp.sum(r * r, -1) - d2, 0.0)
        jac = 2.0 * jnp.einsum("kcx,kcj,kjx->kcj", r, coupling, r0)
        jac = jnp.where(valid[:, :, None] & valid[:, None, :], jac, eye)
        return lam - jnp.linalg.solve(jac, residual[..., None])[..., 0], None

    lam0 = jnp.zeros(clusters.shape, x_new.dtype)
    lam, _ = jax.lax.scan(newton, lam0, None, length=iterations)
    return x + _apply(_scatter(lam, con, clusters), r_old, con, x_new.shape[0])


def iterative(con: Constraints) -> Constraints:
    """The same constraints solved by M-SHAKE only: for positions that may be far from the
    constraint surface (a starting structure, a minimizer's step), where Newton's method
    converges and SETTLE's closed form does not apply."""
    return con._replace(settle=None, shake_clusters=None)


def settle_displacement(x_new, x_old, w: Settle, box=None):
    """[N, 3] displacements that make every SETTLE water of ``x_new`` rigid (zero elsewhere).

    Per water, in the frame of Miyamoto & Kollman: z along the normal of the old plane, x
    perpendicular to it and to the apex's position from the new centre of mass. Constraint
    displacements lie in the old plane, so each atom keeps its new z; the canonical triangle
    is tilted by phi and psi to match them, then turned by theta about z so that the
    mass-weighted torque of the displacements about the old positions vanishes."""
    from chronograd.space.periodic import minimum_image

    a, b, c = (w.atoms[:, k] for k in range(3))
    dt = x_new.dtype
    m_a = jnp.asarray(w.m_a, dt)[:, None]
    m_b = jnp.asarray(w.m_b, dt)[:, None]
    total = m_a + 2.0 * m_b

    def rel(x, i):  # vectors from the apex, minimum image
        d = x[i] - x[a]
        return d if box is None else minimum_image(d, box)

    b0, c0 = rel(x_old, b), rel(x_old, c)
    b_new, c_new = rel(x_new, b), rel(x_new, c)
    com = m_b * (b_new + c_new) / total  # new centre of mass, from the new apex
    a1, b1, c1 = -com, b_new - com, c_new - com

    def unit(v):
        return v / jnp.linalg.norm(v, axis=-1, keepdims=True)

    ez = unit(jnp.cross(b0, c0))
    ex = unit(jnp.cross(a1, ez))
    ey = jnp.cross(ez, ex)

    def frame(v):
        return jnp.sum(v * ex, -1), jnp.sum(v * ey, -1), jnp.sum(v * ez, -1)

    xb0, yb0, _ = frame(b0)
    xc0, yc0, _ = frame(c0)
    _, _, za1 = frame(a1)
    xb1, yb1, zb1 = frame(b1)
    xc1, yc1, zc1 = frame(c1)

    rc = 0.5 * jnp.asarray(w.d_bc, dt)
    height = jnp.sqrt(jnp.asarray(w.d_ab, dt) ** 2 - rc * rc)
    ra = height * 2.0 * m_b[:, 0] / total[:, 0]  # centre of mass to apex
    rb = height - ra  # centre of mass to the midpoint of b and c
    sin_phi = za1 / ra
    cos_phi = jnp.sqrt(1.0 - sin_phi * sin_phi)
    sin_psi = (zb1 - zc1) / (2.0 * rc * cos_phi)
    cos_psi = jnp.sqrt(1.0 - sin_psi * sin_psi)
    ya2 = ra * cos_phi
    xb2 = -rc * cos_psi
    yb2 = -rb * cos_phi - rc * sin_psi * sin_phi
    yc2 = -rb * cos_phi + rc * sin_psi * sin_phi
    alpha = xb2 * (xb0 - xc0) + yb0 * yb2 + yc0 * yc2
    beta = xb2 * (yc0 - yb0) + xb0 * yb2 + xc0 * yc2
    gamma = xb0 * yb1 - xb1 * yb0 + xc0 * yc1 - xc1 * yc0
    a2b2 = alpha * alpha + beta * beta
    sin_t = (alpha * gamma - beta * jnp.sqrt(a2b2 - gamma * gamma)) / a2b2
    cos_t = jnp.sqrt(1.0 - sin_t * sin_t)

    def lab(xd, yd, zd):
        return xd[:, None] * ex + yd[:, None] * ey + zd[:, None] * ez

    a3 = lab(-ya2 * sin_t, ya2 * cos_t, za1)
    b3 = lab(xb2 * cos_t - yb2 * sin_t, xb2 * sin_t + yb2 * cos_t, zb1)
    c3 = lab(-xb2 * cos_t - yc2 * sin_t, -xb2 * sin_t + yc2 * cos_t, zc1)
    out = jnp.zeros_like(x_new)
    return out.at[a].set(a3 - a1).at[b].set(b3 - b1).at[c].set(c3 - c1)


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
