"""Isotropic Monte Carlo barostat (NPT), as OpenMM's MonteCarloBarostat.

Every ``frequency`` steps a volume change dV, uniform in [-max_dv, max_dv], is proposed; the
box and the centre of every molecule are scaled by (V'/V)^(1/3) (molecules move rigidly, so
constraints stay satisfied) and the move is accepted with probability
min(1, exp(-(dU + P dV - N_mol kT ln(V'/V)) / kT)). The step size adapts toward 25-75 %
acceptance every 10 attempts, as OpenMM does. Reference: Chow & Ferguson, Comput. Phys.
Commun. 91, 283 (1995), doi:10.1016/0010-4655(95)00059-O; Aqvist et al., Chem. Phys. Lett.
384, 288 (2004), doi:10.1016/j.cplett.2003.12.039.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.dynamics.state import MDState
from chronograd.errors import InputError
from chronograd.system.forces import force_fn
from chronograd.units import BAR, BOLTZMANN


def molecules_of(system) -> np.ndarray:
    """[N] molecule index per particle: connected components of bonded terms, constraints and
    virtual sites with their parents."""
    n = system.n_atoms
    parent = np.arange(n)

    def find(a):
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    groups = [np.asarray(system.constraints).reshape(-1, 2)]
    for t in system.terms:
        atoms = getattr(t, "atoms", None)
        if atoms is not None and np.asarray(atoms).ndim == 2 and np.asarray(atoms).shape[1] > 1:
            groups.append(np.asarray(atoms))
    for vs in system.virtual_sites:
        groups.append(np.concatenate([np.asarray(vs.sites)[:, None], np.asarray(vs.parents)],
                                     axis=1))
    for g in groups:
        for row in g:
            r0 = find(int(row[0]))
            for a in row[1:]:
                ra = find(int(a))
                if ra != r0:
                    parent[ra] = r0
    roots = np.array([find(a) for a in range(n)])
    return np.unique(roots, return_inverse=True)[1]


class Barostat(NamedTuple):
    init: object  # (state) -> state with barostat entries in extra
    apply: object  # (state, params, pressure_bar, temperature_k) -> state
    frequency: int


def monte_carlo_barostat(integrator, *, pressure: float = 1.0, temperature: float = 300.0,
                         frequency: int = 25) -> Barostat:
    """NPT by Monte Carlo volume moves for ``integrator``'s system. ``pressure`` in bar,
    ``temperature`` in K (both overridable per call); ``frequency`` in steps."""
    system = integrator.system
    if system.box is None:
        raise InputError("a barostat needs a periodic system (a box)")
    mol = jnp.asarray(molecules_of(system))
    n_mol = int(mol.max()) + 1
    counts = jnp.zeros(n_mol).at[mol].add(1.0)
    compute = force_fn(system, integrator.neighbor_fns)

    def init(state: MDState) -> MDState:
        volume = jnp.abs(jnp.linalg.det(state.box))
        extra = {**state.extra, "baro_max_dv": 0.01 * volume,
                 "baro_attempts": jnp.asarray(0), "baro_accepts": jnp.asarray(0)}
        return state._replace(extra=extra)

    def apply(s: MDState, params, pressure_bar=pressure, temperature_k=temperature):
        kt = BOLTZMANN * temperature_k
        key, k1, k2 = jax.random.split(s.key, 3)
        volume = jnp.abs(jnp.linalg.det(s.box))
        dv = s.extra["baro_max_dv"] * (2.0 * jax.random.uniform(k1, dtype=s.box.dtype) - 1.0)
        new_volume = volume + dv
        scale = (new_volume / volume) ** (1.0 / 3.0)
        centres = jax.ops.segment_sum(s.positions, mol, n_mol) / counts[:, None]
        x = s.positions + (scale - 1.0) * centres[mol]
        box = s.box * scale
        x, nbrs, u, f = compute(x, box, params, s.neighbors)
        w = (u - s.potential_energy + pressure_bar * BAR * dv
             - n_mol * kt * jnp.log(new_volume / volume))
        accept = (new_volume > 0) & (jax.random.uniform(k2, dtype=w.dtype) < jnp.exp(-w / kt))
        pick = lambda a, b: jax.tree_util.tree_map(  # noqa: E731
            lambda p, q: jnp.where(accept, p, q), a, b)
        attempts = s.extra["baro_attempts"] + 1
        accepts = s.extra["baro_accepts"] + accept.astype(attempts.dtype)
        rate = accepts / attempts
        adapt = attempts >= 10
        max_dv = s.extra["baro_max_dv"]
        max_dv = jnp.where(adapt & (rate < 0.25), max_dv / 1.1, max_dv)
        max_dv = jnp.where(adapt & (rate > 0.75), jnp.minimum(max_dv * 1.1, 0.3 * volume),
                           max_dv)
        extra = {**s.extra, "baro_max_dv": max_dv,
                 "baro_attempts": jnp.where(adapt, 0, attempts),
                 "baro_accepts": jnp.where(adapt, 0, accepts)}
        new = s._replace(positions=x, forces=f, potential_energy=u, box=box, neighbors=nbrs)
        out = pick(new, s)
        return out._replace(key=key, extra=extra)

    return Barostat(init, apply, int(frequency))
