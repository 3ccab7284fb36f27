"""Energy minimization: ``minimize(system, positions, method="lbfgs" | "fire")``.

Converges when the root-mean-square force component falls below ``tolerance`` (kJ/mol/nm;
OpenMM's LocalEnergyMinimizer criterion and default, 10). The result carries a status instead
of raising inside the loop: "converged", "max_iterations" (the iteration budget is spent),
"stalled" (the search and its float64 polish ended inside the budget, still above
tolerance) or "non_finite".
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
    Where the float64 RMS force is still above ``tolerance`` when the search ends inside its
    budget (float32 forces met it, or SHAKE's projection of a restrained result moved the
    structure), the search continues in float64 from there with the iterations left and
    stiffer constraint restraints; ``iterations`` counts all of it.
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
    programs = _programs(system, method, float(tolerance), use_nl, con, n_dof, precision)
    if con is not None:
        x = programs["shake"](x, x, con, box)
    x_final, iterations = _search(programs, method, x, box, params, nl_fns, con,
                                  int(max_iterations))
    x_final, u, f, rms = _report(programs, x_final, box, params, nl_fns, n_dof)
    # A search can end inside its budget with the float64 report above tolerance: a float32
    # search met its tolerance in float32 forces, or SHAKE moved the restrained L-BFGS result
    # off the restrained minimum (bonds stretched by force / 2k; after projection the other
    # terms feel the shift: a floor of ~1 kJ/mol/nm on ethylene glycol, ~4 on a water box at
    # k = 1e6). Polish in float64 from there with the iterations left: after a float32 search
    # first at the same restraint, then 100x stiffer each round, as OpenMM's
    # LocalEnergyMinimizer escalates its restraints (FIRE projects instead; it ignores k).
    rounds = (RESTRAINT_K,) if precision == "mixed" else ()  # float64 at the same restraint
    for stiffness in rounds + (RESTRAINT_K * 100.0, RESTRAINT_K * 1e4):
        if not (np.isfinite(u) and rms >= tolerance and iterations < max_iterations):
            break
        double = _programs(system, method, float(tolerance), use_nl, con, n_dof, "double")
        x_polish, k = _search(double, method, x_final, box, params, nl_fns, con,
                              int(max_iterations) - iterations, stiffness)
        if k == 0:
            break
        iterations += k
        x_final, u, f, rms = _report(double, x_polish, box, params, nl_fns, n_dof)
    status = ("non_finite" if not np.isfinite(u) else
              "converged" if rms < tolerance else
              "max_iterations" if iterations >= max_iterations else "stalled")
    return MinimizeResult(np.asarray(x_final), u, rms,
                          float(jnp.max(jnp.linalg.norm(f, axis=-1))), iterations, status)


def _search(programs, method, x, box, params, nl_fns, con, budget, stiffness=RESTRAINT_K):
    """One minimizer run from ``x`` with at most ``budget`` iterations (neighbor lists
    reallocated between chunks); constrained L-BFGS results are SHAKE-projected."""
    run = programs["run"]
    if method == "fire":
        nbrs = None if nl_fns is None else nl_fns.allocate(x, box)
        s, iters = run(x, nbrs, box, params, budget)
        if s.neighbors is not None and bool(s.neighbors.did_overflow):
            s, more = run(s.positions, nl_fns.allocate(s.positions, box), box, params,
                          budget - int(iters))
            iters = iters + more
        return s.positions, int(iters)
    flat, iterations = x.ravel(), 0
    chunk = budget if nl_fns is None else min(budget, 200)
    while True:
        nbrs = None if nl_fns is None else nl_fns.allocate(flat.reshape(x.shape), box)
        flat, _, k = run(flat, nbrs, box, params, min(chunk, budget - iterations),
                         stiffness)
        iterations += int(k)
        if int(k) < chunk or iterations >= budget or nl_fns is None:
            break
    x_final = flat.reshape(x.shape)
    if con is not None:
        x_final = programs["shake"](x_final, x_final, con, box)
    return x_final, iterations


def _report(programs, x, box, params, nl_fns, n_dof):
    """Energy, constraint-projected forces and RMS force in float64 at ``x``."""
    nbrs = None if nl_fns is None else nl_fns.allocate(x, box)
    x, _, u, f = programs["compute"](x, box, params, nbrs)
    f = programs["project"](f, x, box)
    return x, float(u), f, float(_rms(f, n_dof))


def _programs(system, method, tolerance, use_nl, con, n_dof, precision="double") -> dict:
    """The jitted pieces of a minimization, built once per system and options (positions,
    box and parameters are arguments, so later calls reuse them). ``compute`` (the final
    report) is float64; the search uses ``precision``."""
    key = ("minimize", method, tolerance, use_nl, con is None, precision)
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
        def run(x, nbrs, box, params, budget):
            s = init(x, box, params, nbrs)

            def cond(c):
                s, k = c
                return ((k < budget) & (_rms(projected(s.forces, s.positions, box),
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

        def objective(flat, nbrs, box, params, shape, stiffness):
            xx = flat.reshape(shape)
            u = energy(xx, box, params, nbrs)
            if con is not None:
                r = jnp.linalg.norm(bond_vectors(xx, con.pairs, box), axis=-1)
                u = u + stiffness * jnp.sum((r - con.distances) ** 2)
            return u

        @jax.jit
        def run(flat, nbrs, box, params, budget, stiffness=RESTRAINT_K):
            shape = (flat.shape[0] // system.dim, system.dim)
            return lbfgs_run(lambda f: objective(f, nbrs, box, params, shape, stiffness), flat,
                             max_iterations=budget, tolerance=tolerance,
                             rms_force=lambda g: _rms(g, n_dof))
    out["run"] = run
    cache[key] = out
    return out


__all__ = ["FireState", "MinimizeResult", "fire", "minimize"]
