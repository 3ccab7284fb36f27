"""Optimal control of a dragged Brownian particle (Engel, Smith & Brenner, PRX 2023), against
Schmiedl & Seifert's closed form (PRL 2007).

An overdamped particle in a harmonic trap, in units k = gamma = k_B T = 1 (chronograd: k = 1
kJ/mol/nm^2, mass 1 amu with friction 1/ps, T = 1 / k_B K). The trap centre moves by a
distance D in time T. The protocol lambda(t) is a piecewise-linear curve through K knots
(endpoint jumps allowed); its knots are trained by gradient descent on the mean work, the
gradient taken through the simulated trajectories (pathwise, common random numbers). Then
the learned and the linear protocols are each simulated with fresh noise and their mean work
compared with theory: the optimum is D^2 / (T + 2), with jumps of D / (T + 2) at both ends;
a linear ramp costs (D / T)^2 (T - 1 + exp(-T)).

The second protocol changes the trap's stiffness from k_i to k_f in time T (Schmiedl &
Seifert's second example): the optimum keeps sqrt(<x^2>) linear in time, with jumps of the
stiffness at both ends, and its work has a closed form (``theory_stiffness``); the linear
ramp's work comes from the exact variance equation d<x^2>/dt = -2 k(t) <x^2> + 2. The trap is
isotropic in 2D, each axis an independent copy of the 1D problem; works are per axis.

    python examples/designs/optimal_trap.py --duration 1 --distance 1 --json
    python examples/designs/optimal_trap.py --duration 1 --stiffness 1 4 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import chronograd as cg
from chronograd.dynamics.protocols import piecewise_linear, protocol_work, step_times
from chronograd.errors import InputError
from chronograd.system.terms import HarmonicTrapTerm
from chronograd.units import BOLTZMANN

KT_KELVIN = 1.0 / BOLTZMANN  # k_B T = 1 kJ/mol


def theory_optimal(duration: float, distance: float) -> float:
    return distance ** 2 / (duration + 2.0)


def theory_linear(duration: float, distance: float) -> float:
    return (distance / duration) ** 2 * (duration - 1.0 + math.exp(-duration))


def theory_stiffness(duration: float, k_i: float, k_f: float) -> tuple[float, callable]:
    """(optimal mean work, optimal protocol k(t) for 0 < t < T) of a stiffness change in 1D
    (k_B T = gamma = 1): with s = sqrt(<x^2>) linear from s_i = 1/sqrt(k_i) to s_T,
    W = k_f s_T^2/2 - 1/2 - ln(s_T/s_i) + (s_T - s_i)^2/T, minimized over s_T, and
    k(t) = 1/s^2 - s'/s."""
    t_ = duration
    s_i = 1.0 / math.sqrt(k_i)
    a = k_f + 2.0 / t_
    s_t = (s_i / t_ + math.sqrt(s_i ** 2 / t_ ** 2 + a)) / a
    work = k_f * s_t ** 2 / 2 - 0.5 - math.log(s_t / s_i) + (s_t - s_i) ** 2 / t_

    def protocol(t):
        s = s_i + (s_t - s_i) * np.asarray(t) / t_
        return 1.0 / s ** 2 - (s_t - s_i) / (t_ * s)

    return work, protocol


def theory_stiffness_linear(duration: float, k_i: float, k_f: float, n: int = 20000) -> float:
    """Mean work of the linear ramp k_i -> k_f in 1D: W = int k' <x^2>/2 dt with
    d<x^2>/dt = -2 k <x^2> + 2 (RK4, n steps)."""
    h, rate = duration / n, (k_f - k_i) / duration
    w, work = 1.0 / k_i, 0.0
    f = lambda t, w: -2.0 * (k_i + rate * t) * w + 2.0  # noqa: E731
    for i in range(n):
        t = i * h
        a1 = f(t, w)
        a2 = f(t + h / 2, w + h / 2 * a1)
        a3 = f(t + h / 2, w + h / 2 * a2)
        a4 = f(t + h, w + h * a3)
        w_new = w + h / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
        work += rate * h * (w + w_new) / 4.0
        w = w_new
    return work


def trap_system():
    return cg.System(masses=np.ones(1), terms=(HarmonicTrapTerm("Trap", np.array([0])),),
                     params={"Trap": {"center": np.zeros((1, 2)), "k": np.ones(1)}})


def schedule_of(knots, distance, duration, n_steps):
    """Trap params for the initial value, every step and the final value."""
    lam = piecewise_linear(knots, step_times(n_steps, duration / n_steps), duration)
    lam = jnp.concatenate([jnp.zeros(1), lam, jnp.full(1, distance)])
    center = jnp.stack([lam, jnp.zeros_like(lam)], axis=-1)[:, None, :]
    return {"Trap": {"center": center, "k": jnp.ones((lam.shape[0], 1))}}


def make_mean_work(distance, duration, n_steps):
    integ = cg.dynamics.brownian(trap_system(), timestep=duration / n_steps,
                                 temperature=KT_KELVIN, friction=1.0)
    one = lambda sched, x0, key: protocol_work(integ, sched, x0, key)[0]  # noqa: E731
    many = jax.vmap(one, in_axes=(None, 0, 0))

    def works(knots, key, n):
        k1, k2 = jax.random.split(key)
        x0 = jax.random.normal(k1, (n, 1, 2))  # equilibrium in the trap at 0: variance kT/k
        return many(schedule_of(knots, distance, duration, n_steps), x0,
                    jax.random.split(k2, n))

    return works


def stiffness_schedule_of(knots, k_i, k_f, duration, n_steps):
    """Trap params (centre at 0) whose stiffness is k_i, the curve through ``knots``, k_f."""
    lam = piecewise_linear(knots, step_times(n_steps, duration / n_steps), duration)
    k = jnp.concatenate([jnp.full(1, k_i), lam, jnp.full(1, k_f)])
    return {"Trap": {"center": jnp.zeros((k.shape[0], 1, 2)), "k": k[:, None]}}


def make_stiffness_work(k_i, k_f, duration, n_steps):
    """works(knots, key, n): per-axis works of n trajectories starting in equilibrium at k_i."""
    integ = cg.dynamics.brownian(trap_system(), timestep=duration / n_steps,
                                 temperature=KT_KELVIN, friction=1.0)
    one = lambda sched, x0, key: protocol_work(integ, sched, x0, key)[0]  # noqa: E731
    many = jax.vmap(one, in_axes=(None, 0, 0))

    def works(knots, key, n):
        k1, k2 = jax.random.split(key)
        x0 = jax.random.normal(k1, (n, 1, 2)) / jnp.sqrt(k_i)
        return 0.5 * many(stiffness_schedule_of(knots, k_i, k_f, duration, n_steps), x0,
                          jax.random.split(k2, n))

    return works


def _learn_and_measure(works, linear, learning_rate, iterations, train_trajectories,
                       eval_trajectories, seed):
    """Adam on the knots from ``linear`` (mean work of a fixed sample: common random
    numbers, a deterministic objective); then (knots, (work, stderr) learned, (work, stderr)
    linear) measured with fresh trajectories."""
    grad = jax.jit(jax.value_and_grad(
        lambda k, key: jnp.mean(works(k, key, train_trajectories))))
    theta, opt = linear, optax.adam(learning_rate)
    state = opt.init(theta)
    for _ in range(iterations):
        _, g = grad(theta, jax.random.key(seed))
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)

    def measured(k, key):
        w = np.asarray(works(k, key, eval_trajectories))
        return float(w.mean()), float(w.std(ddof=1) / np.sqrt(w.size))

    eval_key = jax.random.key(seed + 1000)
    return (theta, measured(theta, eval_key),
            measured(linear, jax.random.fold_in(eval_key, 1)))


def run_stiffness(duration: float, k_i: float, k_f: float, *, knots: int = 8,
                  n_steps: int = 100, train_trajectories: int = 4000, iterations: int = 150,
                  eval_trajectories: int = 100000, seed: int = 0) -> dict:
    """Learn the stiffness protocol k_i -> k_f; measure it and the linear ramp afresh."""
    if not (duration > 0 and math.isfinite(duration)):
        raise InputError(f"--duration must be a positive number, got {duration}")
    if not (k_i > 0 and k_f > 0 and math.isfinite(k_i) and math.isfinite(k_f)):
        raise InputError(f"--stiffness needs two positive finite values, got {k_i}, {k_f}")
    works = jax.jit(make_stiffness_work(k_i, k_f, duration, n_steps), static_argnums=2)
    linear = jnp.linspace(k_i, k_f, knots)
    theta, (w_learned, se_learned), (w_linear, se_linear) = _learn_and_measure(
        works, linear, 0.05 * abs(k_f - k_i) + 1e-3, iterations, train_trajectories,
        eval_trajectories, seed)
    work_theory, protocol = theory_stiffness(duration, k_i, k_f)
    return {"work_learned": w_learned, "work_linear": w_linear, "work_theory": work_theory,
            "work_linear_theory": theory_stiffness_linear(duration, k_i, k_f),
            "free_energy": 0.5 * math.log(k_f / k_i),
            "stderr_learned": se_learned, "stderr_linear": se_linear,
            "knots": np.asarray(theta).tolist(),
            "knots_theory": protocol(np.linspace(0.0, duration, knots)).tolist(),
            "duration": duration, "stiffness": [k_i, k_f], "n_steps": n_steps}


def run(duration: float, distance: float, *, knots: int = 8, n_steps: int = 100,
        train_trajectories: int = 4000, iterations: int = 100, eval_trajectories: int = 100000,
        seed: int = 0) -> dict:
    if not (duration > 0 and math.isfinite(duration)):
        raise InputError(f"--duration must be a positive number, got {duration}")
    if not math.isfinite(distance):
        raise InputError(f"--distance must be finite, got {distance}")
    works = jax.jit(make_mean_work(distance, duration, n_steps), static_argnums=2)
    linear = jnp.linspace(0.0, distance, knots)
    theta, (w_learned, se_learned), (w_linear, se_linear) = _learn_and_measure(
        works, linear, 0.05 * max(abs(distance), 1e-3), iterations, train_trajectories,
        eval_trajectories, seed)
    return {"work_learned": w_learned, "work_linear": w_linear,
            "work_theory": theory_optimal(duration, distance),
            "work_linear_theory": theory_linear(duration, distance),
            "stderr_learned": se_learned, "stderr_linear": se_linear,
            "knots": np.asarray(theta).tolist(),
            "knots_theory": [distance * (t + 1.0) / (duration + 2.0)
                             for t in np.linspace(0.0, duration, knots)],
            "duration": duration, "distance": distance, "n_steps": n_steps}


def compare(duration: float, distance: float, *, knots: int = 8, n_steps: int = 50,
            trajectories: int = 1000, max_evaluations: int = 4000, seed: int = 0,
            remove: float = 0.99) -> dict:
    """Objective evaluations each method needs to remove 99 % of the linear ramp's excess work
    (measured on one fixed sample of trajectories, so both see the same objective): Adam on
    the pathwise gradient (one evaluation = one value and gradient, about 3 forward costs)
    against neuroevolution at zero temperature (one evaluation = one mutation)."""
    from chronograd.fit.evolution import evolve

    works = make_mean_work(distance, duration, n_steps)
    key = jax.random.key(seed)
    loss = jax.jit(lambda k: jnp.mean(works(k, key, trajectories)))
    linear = jnp.linspace(0.0, distance, knots)
    best = jnp.asarray([distance * (t + 1.0) / (duration + 2.0)
                        for t in np.linspace(0.0, duration, knots)])
    w_star, w_lin = float(loss(best)), float(loss(linear))
    target = w_star + (1.0 - remove) * (w_lin - w_star)
    grad = jax.jit(jax.value_and_grad(loss))
    opt = optax.adam(0.05 * max(abs(distance), 1e-3))
    theta, state, n_grad = linear, opt.init(linear), None
    for i in range(1, max_evaluations + 1):
        value, g = grad(theta)
        if float(value) <= target:
            n_grad = i
            break
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
    _, losses = jax.jit(evolve, static_argnums=(0, 3, 4, 5))(
        loss, linear, jax.random.key(seed + 1), 0.02 * max(abs(distance), 1e-3), 1e12,
        max_evaluations)
    hit = np.flatnonzero(np.asarray(losses) <= target)
    return {"gradient_evaluations": n_grad,
            "neuroevolution_evaluations": int(hit[0]) + 1 if hit.size else None,
            "target_work": target, "optimal_work": w_star, "linear_work": w_lin}


def plot(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_max = out["duration"]
    t = np.linspace(0.0, t_max, len(out["knots"]))
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    if "stiffness" in out:
        k_i, k_f = out["stiffness"]
        fine = np.linspace(1e-6, t_max - 1e-6, 200)
        ax.plot([-0.05 * t_max, 0], [k_i, k_i], "k:", lw=1)
        ax.plot([t_max, 1.05 * t_max], [k_f, k_f], "k:", lw=1)
        ax.plot(fine, theory_stiffness(t_max, k_i, k_f)[1](fine), "k-",
                label=f"theory, W = {out['work_theory']:.4f}")
        ax.plot([0, t_max], [k_i, k_f], "C1--",
                label=f"linear, W = {out['work_linear']:.4f} ± {out['stderr_linear']:.4f}")
        ax.plot(t, out["knots"], "C0o-", label=f"learned, W = {out['work_learned']:.4f} ±"
                                                f" {out['stderr_learned']:.4f}")
        ax.set_xlabel("t (γ/k_i)")
        ax.set_ylabel("trap stiffness k(t)")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title(f"stiffness change {k_i:g} → {k_f:g} in T = {t_max:g} (work per axis)",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        return
    d = out["distance"]
    ax.step([-0.05 * t_max, 0, 0], [0, 0, d / (t_max + 2)], "k:", lw=1)
    ax.plot([0, t_max], [d / (t_max + 2), d * (t_max + 1) / (t_max + 2)], "k-",
            label=f"theory, W = {out['work_theory']:.4f}")
    ax.plot([0, t_max], [0, d], "C1--",
            label=f"linear, W = {out['work_linear']:.4f} ± {out['stderr_linear']:.4f}")
    ax.plot(t, out["knots"], "C0o-",
            label=f"learned, W = {out['work_learned']:.4f} ± {out['stderr_learned']:.4f}")
    ax.set_xlabel("t (γ/k)")
    ax.set_ylabel("trap centre λ(t)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"dragged trap, T = {t_max:g}, D = {d:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1.0, help="T (units of gamma / k)")
    ap.add_argument("--distance", type=float, default=1.0, help="D (units of sqrt(kT / k))")
    ap.add_argument("--stiffness", type=float, nargs=2, metavar=("KI", "KF"),
                    help="change the stiffness from KI to KF (units of kT / length^2) instead"
                         " of dragging the trap")
    ap.add_argument("--knots", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--trajectories", type=int, default=100000, help="for the measured works")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="PNG", help="write the protocols and works to PNG")
    ap.add_argument("--compare", action="store_true",
                    help="evaluations to a target: gradient descent vs neuroevolution")
    args = ap.parse_args(argv)
    if args.compare:
        print(json.dumps(compare(args.duration, args.distance, knots=args.knots,
                                 seed=args.seed)))
        return 0
    try:
        if args.stiffness:
            out = run_stiffness(args.duration, *args.stiffness, knots=args.knots,
                                n_steps=args.steps, iterations=args.iterations,
                                eval_trajectories=args.trajectories, seed=args.seed)
        else:
            out = run(args.duration, args.distance, knots=args.knots, n_steps=args.steps,
                      iterations=args.iterations, eval_trajectories=args.trajectories,
                      seed=args.seed)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(out, args.plot)
    if args.json:
        print(json.dumps({k: out[k] for k in ("work_learned", "work_linear", "work_theory")}))
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
