"""Kinetic pathways of self-assembly (Jhaveri, Loggia, Qian, Rotskoff & Covert, PNAS 2024):
rate constants that maximize the yield of a complex at a stopping time, at fixed equilibrium
constants, by differentiating through the integration of the mass-action equations.

The complex is a heterotrimer ABC from monomers at equal concentrations c0 = 1: three dimers
(AB, BC, AC, dissociation constant K_d = 1e-2) and three ways to complete the trimer
(AB + C, BC + A, AC + B, K_d = 1e-4). Every rate constant is capped by the diffusion limit,
k_on = k_max sigmoid(phi) with k_max = 1 (units c0^-1 t^-1); the yield [ABC](t_stop) / c0 is
maximized over phi with Adam, the gradient taken through diffrax's stiff solver. With every
rate at the cap, fast dimerization strands monomers in dimers that cannot complete (a kinetic
trap); the design slows dimerization relative to completion. Neuroevolution on the same
objective is the gradient-free baseline (``--compare``).

    python examples/designs/kinetic_pathways.py --time 20 --json
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

from chronograd.dynamics.mass_action import ReactionNetwork, check_rates, concentrations
from chronograd.errors import InputError

jax.config.update("jax_enable_x64", True)

SPECIES = ("A", "B", "C", "AB", "BC", "AC", "ABC")
REACTIONS = ("A + B <-> AB", "B + C <-> BC", "A + C <-> AC",
             "AB + C <-> ABC", "BC + A <-> ABC", "AC + B <-> ABC")
K_D = (1e-2, 1e-2, 1e-2, 1e-4, 1e-4, 1e-4)
C0 = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)
K_MAX = 1.0


def trimer():
    return ReactionNetwork.parse(SPECIES, REACTIONS)


def rates(phi):
    return K_MAX * jax.nn.sigmoid(phi)


def make_yield(t_stop: float):
    net = trimer()
    check_rates(net, K_D, "dissociation constants")

    def yield_of(phi):
        return concentrations(net, jnp.asarray(C0), rates(phi), jnp.asarray(K_D),
                              t_stop)[-1] / C0[0]

    return yield_of


def run(t_stop: float, *, iterations: int = 150, learning_rate: float = 0.3,
        seed: int = 0) -> dict:
    if not (t_stop > 0 and math.isfinite(t_stop)):
        raise InputError(f"--time must be a positive number, got {t_stop}")
    yield_of = make_yield(t_stop)
    step = jax.jit(jax.value_and_grad(lambda p: -yield_of(p)))
    # the all-at-the-cap start (phi = 6: k = 0.9975 k_max), slightly asymmetric so the
    # symmetric saddle of the three equivalent pathways is left
    phi = jnp.full(6, 6.0) + 0.01 * jax.random.normal(jax.random.key(seed), (6,))
    uniform = float(yield_of(jnp.full(6, 50.0)))
    opt = optax.adam(learning_rate)
    state = opt.init(phi)
    history = []
    for _ in range(iterations):
        value, g = step(phi)
        history.append(-float(value))
        updates, state = opt.update(g, state)
        phi = optax.apply_updates(phi, updates)
    designed = float(yield_of(phi))
    return {"yield_uniform": uniform, "yield_designed": designed, "time": t_stop,
            "rates": np.asarray(rates(phi)).tolist(), "history": history,
            "reactions": list(REACTIONS)}


def compare(t_stop: float, *, max_evaluations: int = 3000, seed: int = 0,
            fraction: float = 0.9) -> dict:
    """Objective evaluations to gain ``fraction`` of the designed improvement: Adam on the
    gradient (one value-and-gradient each) against zero-temperature neuroevolution."""
    from chronograd.fit.evolution import evolve

    yield_of = make_yield(t_stop)
    best = run(t_stop, seed=seed)
    target = best["yield_uniform"] + fraction * (best["yield_designed"] - best["yield_uniform"])
    step = jax.jit(jax.value_and_grad(lambda p: -yield_of(p)))
    phi0 = jnp.full(6, 6.0) + 0.01 * jax.random.normal(jax.random.key(seed), (6,))
    opt = optax.adam(0.3)
    phi, state, n_grad = phi0, opt.init(phi0), None
    for i in range(1, max_evaluations + 1):
        value, g = step(phi)
        if -float(value) >= target:
            n_grad = i
            break
        updates, state = opt.update(g, state)
        phi = optax.apply_updates(phi, updates)
    loss = jax.jit(lambda p: -yield_of(p))
    _, losses = jax.jit(evolve, static_argnums=(0, 3, 4, 5))(
        loss, phi0, jax.random.key(seed + 1), 0.3, 1e12, max_evaluations)
    hit = np.flatnonzero(-np.asarray(losses) >= target)
    return {"gradient_evaluations": n_grad,
            "neuroevolution_evaluations": int(hit[0]) + 1 if hit.size else None,
            "target_yield": target, **{k: best[k] for k in ("yield_uniform",
                                                            "yield_designed")}}


def plot(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net = trimer()
    t = np.geomspace(1e-2, 10 * out["time"], 200)
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for label, k, style in (("all rates at the cap", np.full(6, K_MAX), "C1--"),
                            ("designed rates", np.asarray(out["rates"]), "C0-")):
        c = concentrations(net, jnp.asarray(C0), jnp.asarray(k), jnp.asarray(K_D),
                           float(t[-1]), times=t)
        ax.plot(t, np.asarray(c[:, -1]) / C0[0], style, label=label)
    ax.axvline(out["time"], color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("time (1 / (k_max c0))")
    ax.set_ylabel("trimer yield [ABC] / c0")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"yield at t = {out['time']:g}: {out['yield_uniform']:.3f} →"
                 f" {out['yield_designed']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=20.0, help="stopping time")
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="PNG")
    ap.add_argument("--compare", action="store_true",
                    help="evaluations to a target: gradient descent vs neuroevolution")
    args = ap.parse_args(argv)
    try:
        if args.compare:
            print(json.dumps(compare(args.time, seed=args.seed)))
            return 0
        out = run(args.time, iterations=args.iterations, seed=args.seed)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(out, args.plot)
    if args.json:
        out = {k: out[k] for k in ("yield_uniform", "yield_designed", "rates")}
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
