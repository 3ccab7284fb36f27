"""Equilibrium propagation / coupled learning on a spring network (Scellier & Bengio 2017;
Stern et al., PRX 2021), against implicit differentiation through the same minimum.

A 2D triangular spring network (6 x 5 nodes, springs at rest length, stiffnesses k_e the
learnable parameters) is strained at two input nodes on its left edge, pulled apart by 10 %
and held; the task is allosteric: the two output nodes on the right edge must move *together*
by 5 %. The cost is C = (d_out - d_target)^2 / 2 at the relaxed network. Its gradient in the
stiffnesses comes either from implicit differentiation (one linear solve at the minimum) or
from equilibrium propagation — two nudged relaxations at cost weights +beta and -beta and the
difference of dE/dk between them — which converges to it as beta -> 0. Both train the network.

    python examples/designs/equilibrium_propagation.py --json
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

import chronograd as cg
from chronograd.errors import InputError
from chronograd.gradients.equilibrium_propagation import equilibrium_propagation, relax
from chronograd.gradients.implicit import implicit_argmin

jax.config.update("jax_enable_x64", True)


class SpringTask:
    def __init__(self, nx: int = 6, ny: int = 5, input_strain: float = 0.1,
                 output_strain: float = -0.05):
        h = np.sqrt(3) / 2
        x = np.array([[i + 0.5 * (j % 2), j * h] for j in range(ny) for i in range(nx)])
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        i, j = np.nonzero(np.triu(np.abs(d - 1.0) < 1e-9))
        self.bonds = np.stack([i, j], axis=1)
        self.system = cg.particle_system(
            x, kernel="soft_sphere", params={"sigma": 0.5, "epsilon": 0.0, "alpha": 2.0},
            bonds=self.bonds, bond_params={"length": d[i, j], "k": np.ones(len(i))})
        self.inputs = (0, nx * (ny - 1))  # bottom-left and top-left corners
        self.outputs = (nx - 1, nx * ny - 1)  # bottom-right and top-right
        x_in = x.copy()
        mid = 0.5 * (x[self.inputs[0]] + x[self.inputs[1]])
        for a in self.inputs:
            x_in[a] = mid + (1.0 + input_strain) * (x[a] - mid)
        self.x_clamped = jnp.asarray(x_in)
        self.free = jnp.asarray([a for a in range(len(x)) if a not in self.inputs])
        self.y0 = jnp.asarray(x[np.asarray(self.free)])
        d_out = np.linalg.norm(x[self.outputs[0]] - x[self.outputs[1]])
        self.target = (1.0 + output_strain) * d_out
        self.U = self.system.energy_fn()
        self.argmin = implicit_argmin(self.energy, tolerance=1e-10)

    def positions(self, y):
        return self.x_clamped.at[self.free].set(y)

    def energy(self, y, params):
        return self.U(self.positions(y), None, params)

    def cost(self, y):
        x = self.positions(y)
        d = jnp.linalg.norm(x[self.outputs[0]] - x[self.outputs[1]])
        return 0.5 * (d - self.target) ** 2

    def with_k(self, k):
        return {**self.system.params, "Bonds": dict(self.system.params["Bonds"], k=k)}

    def implicit_gradient(self, k, y0):
        return jax.grad(lambda kk: self.cost(self.argmin(self.with_k(kk), y0)))(k)

    def ep_gradient(self, k, y_free, beta, symmetric=True):
        g = equilibrium_propagation(self.energy, self.cost, y_free, self.with_k(k), beta,
                                    symmetric=symmetric)
        return g["Bonds"]["k"]


def train(task: SpringTask, method: str, *, steps: int = 60, learning_rate: float = 0.1,
          beta: float = 1e-3) -> list[float]:
    """Cost after every Adam step on the log stiffnesses (the gradient in k times k)."""
    import optax

    if method not in ("implicit", "ep"):
        raise InputError(f"method must be 'implicit' or 'ep', got {method!r}")
    free = jax.jit(lambda k, y: relax(task.energy, y, task.with_k(k), tolerance=1e-10))
    grad = jax.jit(task.implicit_gradient if method == "implicit"
                   else lambda k, y: task.ep_gradient(k, y, beta))
    log_k = jnp.zeros(len(task.bonds))
    opt = optax.adam(learning_rate)
    state = opt.init(log_k)
    y = free(jnp.exp(log_k), task.y0)
    costs = [float(task.cost(y))]
    for _ in range(steps):
        k = jnp.exp(log_k)
        updates, state = opt.update(grad(k, y) * k, state)
        log_k = optax.apply_updates(log_k, updates)
        y = free(jnp.exp(log_k), y)  # warm start from the last free state
        costs.append(float(task.cost(y)))
    return costs


def compare(task: SpringTask, *, reduce: float = 100.0, max_evaluations: int = 3000,
            sigma: float = 0.05, seed: int = 0) -> dict:
    """Objective evaluations to cut the cost by ``reduce``: Adam on the implicit gradient
    (one value and gradient each) against zero-temperature neuroevolution on log k (one
    relaxation each; each mutation perturbs all stiffnesses by N(0, sigma^2))."""
    from chronograd.fit.evolution import evolve

    costs = train(task, "implicit", steps=200)
    target = costs[0] / reduce
    hit = [i for i, c in enumerate(costs) if c <= target]

    def loss(log_k):
        y = relax(task.energy, task.y0, task.with_k(jnp.exp(log_k)))
        return task.cost(y)

    _, losses = jax.jit(evolve, static_argnums=(0, 3, 4, 5))(
        loss, jnp.zeros(len(task.bonds)), jax.random.key(seed), sigma, 1e12, max_evaluations)
    ne = np.flatnonzero(np.asarray(losses) <= target)
    return {"parameters": len(task.bonds), "target_cost": target,
            "gradient_evaluations": hit[0] if hit else None,
            "neuroevolution_evaluations": int(ne[0]) + 1 if ne.size else None,
            "neuroevolution_best": float(np.min(np.asarray(losses)))}


def plot(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    for kind, style in (("one-sided", "C1o-"), ("symmetric", "C0s-")):
        pts = sorted((float(k.split("beta=")[1]), v) for k, v in out["relative_error"].items()
                     if k.startswith(kind))
        a1.loglog(*zip(*pts, strict=True), style, label=kind)
    a1.set_xlabel("nudge β")
    a1.set_ylabel("|g_EP − g_implicit| / |g_implicit|")
    a1.legend(fontsize=8)
    a1.set_title("EP → implicit gradient: O(β), O(β²)", fontsize=9)
    a2.semilogy(out["cost_implicit"], "C2-", label="implicit differentiation")
    a2.semilogy(out["cost_ep"], "C0--", label="equilibrium propagation (β = 1e-3)")
    a2.set_xlabel("training step (Adam on log k)")
    a2.set_ylabel("cost (d_out − d_target)² / 2")
    a2.legend(fontsize=8)
    a2.set_title("allosteric spring task", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--beta", type=float, default=1e-3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="PNG")
    ap.add_argument("--compare", action="store_true",
                    help="evaluations to a target: gradient descent vs neuroevolution")
    args = ap.parse_args(argv)
    if not args.beta > 0:
        print(f"error: --beta must be positive, got {args.beta}", file=sys.stderr)
        return 2
    task = SpringTask()
    if args.compare:
        print(json.dumps(compare(task)))
        return 0
    k = jnp.ones(len(task.bonds))
    y = jax.jit(lambda kk: relax(task.energy, task.y0, task.with_k(kk)))(k)
    exact = task.implicit_gradient(k, task.y0)
    errors = {}
    for beta in (1e-1, 1e-2, 1e-3):
        for sym in (False, True):
            g = task.ep_gradient(k, y, beta, symmetric=sym)
            errors[f"{'symmetric' if sym else 'one-sided'} beta={beta:g}"] = float(
                jnp.linalg.norm(g - exact) / jnp.linalg.norm(exact))
    out = {"relative_error": errors,
           "cost_implicit": train(task, "implicit", steps=args.steps),
           "cost_ep": train(task, "ep", steps=args.steps, beta=args.beta)}
    if args.plot:
        plot(out, args.plot)
    if args.json:
        out = {"relative_error": errors, "initial_cost": out["cost_implicit"][0],
               "final_cost_implicit": out["cost_implicit"][-1],
               "final_cost_ep": out["cost_ep"][-1]}
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
