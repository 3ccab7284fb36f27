"""Energy minimization: ``minimize(system, positions, method="lbfgs" | "fire")``.

Converges when the root-mean-square force component falls below ``tolerance`` (kJ/mol/nm;
OpenMM's LocalEnergyMinimizer criterion and default, 10). The result carries a status instead
of raising inside the loop: "converged", "max_iterations" or "non_finite".
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.dynamics.constraints import (
    bond_vectors,
    build_constraints,
    rattle_velocities,
    shake,
)
from chronograd.errors import InputError
from chronograd.minimize.fire import FireState, fire
from chronograd.minimize.lbfgs import lbfgs_run
from chronograd.system.forces import PRECISIONS, force_fn, to_float32
from chronograd.system.pairs import choose_neighbor_list

RESTRAINT_K = 1e6  # kJ/mol/nm^2 on constrained distances during L-BFGS


class MinimizeResult(NamedTuple):
    positions: np.ndarray
    energy: float
    rms_force: float
    max_force: float
    iterations: int
    status: str


def _rms(g, n_dof: int):
    return jnp.sqrt(jnp.sum(g * g) / n_dof)


def minimize(system, positions, box=None, *, params=None, method: str = "lbfgs",
             tolerance: float = 10.0, max_iterations: int = 10000,
             neighbor_list: bool | None = None, precision: str = "double") -> MinimizeResult:
    """Minimize the potential energy from ``positions`` (nm); returns a MinimizeResult.

    ``precision="mixed"``: the minimizer's energy and forces are evaluated in float32 (as the
    MD integrators' mixed path, and OpenMM's CPU platform, evaluate them) while positions and
    the L-BFGS history stay float64; the reported energy and forces are evaluated in float64.
    """
    if method not in ("lbfgs", "fire"):
        raise InputError(f"method must be 'lbfgs' or 'fire', got {method!r}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    params = system.params if params is None else params
    x, box = system.check_inputs(positions, box)
    x = jnp.asarray(x)
    box = None if box is None else jnp.asarray(box)
    masses = np.asarray(system.masses, np.float64)
    n_dof = int(np.sum(masses > 0)) * system.dim  # coordinates of the real particles
    # Minimization has no dynamics: constraints are projected with unit masses (the gradient
    # projection), not the mass-weighted RATTLE metric; by Newton iterations (a minimizer's
    # steps can be larger than SETTLE's closed form allows).
    con = build_constraints(system.constraints, system.constraint_distances,
                            np.where(masses > 0, 1.0, 0.0), settle=False)
    use_nl = choose_neighbor_list(system, neighbor_list)
    nl_fns = system.neighbor_list() if use_nl else None
    programs = _programs(system, method, float(tolerance), int(max_iterations), use_nl, con,
                         n_dof, precision)
    if con is not None:
        x = programs["shake"](x, x, con, box)

    if method == "fire":
        run = programs["run"]
        nbrs = None if nl_fns is None else nl_fns.allocate(x, box)
        s, iters = run(x, nbrs, box, params)
        if s.neighbors is not None and bool(s.neighbors.did_overflow):
            s, more = run(s.positions, nl_fns.allocate(s.positions, box), box, params)
            iters = iters + more
        x_final, iterations = s.positions, int(iters)
    else:
        run = programs["run"]
        flat, iterations = x.ravel(), 0
        chunk = max_iterations if nl_fns is None else min(max_iterations, 200)
        while True:
            nbrs = None if nl_fns is None else nl_fns.allocate(flat.reshape(x.shape), box)
            flat, _, k = run(flat, nbrs, box, params, chunk)
            iterations += int(k)
            if int(k) < chunk or iterations >= max_iterations or nl_fns is None:
                break
        x_final = flat.reshape(x.shape)
        if con is not None:
            x_final = programs["shake"](x_final, x_final, con, box)
    nbrs = None if nl_fns is None else nl_fns.allocate(x_final, box)
    x_final, _, u, f = programs["compute"](x_final, box, params, nbrs)
    f = programs["project"](f, x_final, box)
    rms = float(_rms(f, n_dof))
    status = ("non_finite" if not np.isfinite(float(u)) else
              "converged" if rms < tolerance else "max_iterations")
    return MinimizeResult(np.asarray(x_final), float(u), rms,
                          float(jnp.max(jnp.linalg.norm(f, axis=-1))), iterations, status)


def _programs(system, method, tolerance, max_iterations, use_nl, con, n_dof,
              precision="double") -> dict:
    """The jitted pieces of a minimization, built once per system and options (positions,
    box and parameters are arguments, so later calls reuse them). ``compute`` (the final
    report) is float64; the search uses ``precision``."""
    key = ("minimize", method, tolerance, max_iterations, use_nl, con is None, precision)
    cache = system._cache
    if key in cache:
        return cache[key]
    nl_fns = system.neighbor_list() if use_nl else None
    compute = force_fn(system, nl_fns)
    search_compute = force_fn(system, nl_fns, precision=precision)

    def projected(f, xx, box):
        return f if con is None else rattle_velocities(f, xx, con, box)

    out = {"compute": jax.jit(compute), "project": jax.jit(projected), "shake": jax.jit(shake)}
    if method == "fire":
        init, step = fire(search_compute, con)

        @jax.jit
        def run(x, nbrs, box, params):
            s = init(x, box, params, nbrs)

            def cond(c):
                s, k = c
                return ((k < max_iterations) & (_rms(projected(s.forces, s.positions, box),
                                                     n_dof) >= tolerance)
                        & jnp.isfinite(s.energy))

            def body(c):
                s, k = c
                return step(s, box, params), k + 1

            return jax.lax.while_loop(cond, body, (s, jnp.asarray(0)))
    else:
        energy = system.energy_fn(neighbor_list=True)
        if precision == "mixed":
            double_energy = energy

            def energy(xx, box, params, nbrs):  # float32 inside, float64 out (and its grad)
                return double_energy(xx.astype(jnp.float32), to_float32(box), to_float32(params),
                                     nbrs).astype(xx.dtype)

        def objective(flat, nbrs, box, params, shape):
            xx = flat.reshape(shape)
            u = energy(xx, box, params, nbrs)
            if con is not None:
                r = jnp.linalg.norm(bond_vectors(xx, con.pairs, box), axis=-1)
                u = u + RESTRAINT_K * jnp.sum((r - con.distances) ** 2)
            return u

        @jax.jit
        def run(flat, nbrs, box, params, budget):
            shape = (flat.shape[0] // system.dim, system.dim)
            return lbfgs_run(lambda f: objective(f, nbrs, box, params, shape), flat,
                             max_iterations=budget, tolerance=tolerance,
                             rms_force=lambda g: _rms(g, n_dof))
    out["run"] = run
    cache[key] = out
    return out


__all__ = ["FireState", "MinimizeResult", "fire", "minimize"]
