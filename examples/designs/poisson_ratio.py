"""Designing the Poisson ratio of athermal disordered solids (Zu & Goodrich, Commun. Mater.
2024) by differentiating through energy minimization.

A 2D bidisperse packing of harmonic–Morse particles (diameters d_A, d_B: a harmonic core
inside contact, a Morse well of depth B_ab outside) is relaxed to a zero-stress minimum: the
particles and the box both relax (fractional coordinates s and the three shape variables of
the reduced box are the minimization variables). Its Poisson ratio comes from linear
response at that minimum (``observables.elastic``: affine strain, non-affine relaxation
through the Hessian).
The gradient of nu with respect to the diameters and binding energies goes through the
minimization by implicit differentiation (``gradients.implicit.implicit_argmin``), never
unrolling the minimizer; the design moves the ensemble-mean nu of several packings toward a
target with Adam, warm-starting every minimization from the last minimum.

Check: a triangular lattice of identical springs at rest length has nu = 1/3 exactly.

    python examples/designs/poisson_ratio.py --lattice triangular --json
    python examples/designs/poisson_ratio.py --target 0.2 --json
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
from chronograd.errors import InputError
from chronograd.gradients.implicit import implicit_argmin
from chronograd.observables.elastic import poisson_ratio

jax.config.update("jax_enable_x64", True)


def triangular_lattice(nx: int = 6, ny: int = 4, a: float = 1.0):
    """Sites of a triangular lattice in a periodic box, and its nearest-neighbour bonds."""
    h = a * np.sqrt(3) / 2
    x = np.array([[(i + 0.5 * (j % 2)) * a, j * h] for j in range(2 * ny) for i in range(nx)])
    box = np.diag([nx * a, 2 * ny * h])
    d = x[:, None] - x[None]
    d -= np.round(d / np.diag(box)) * np.diag(box)
    r = np.linalg.norm(d, axis=-1)
    i, j = np.nonzero(np.triu(np.abs(r - a) < 1e-9))
    return x, box, np.stack([i, j], axis=1)


def lattice_poisson_ratio(nx: int = 6, ny: int = 4) -> float:
    x, box, bonds = triangular_lattice(nx, ny)
    system = cg.particle_system(x, box=box, kernel="soft_sphere",
                                params={"sigma": 0.5, "epsilon": 0.0, "alpha": 2.0},
                                bonds=bonds, bond_params={"length": 1.0, "k": 1.0})
    return float(poisson_ratio(system.energy_fn(), jnp.asarray(x), jnp.asarray(box),
                               system.params))


class Packing:
    """An ensemble of 2D bidisperse harmonic–Morse packings (same species and box, different
    random starts) and the pure functions of the design."""

    def __init__(self, n: int = 32, packings: int = 4, phi: float = 0.9,
                 diameters=(1.0, 1.4), binding: float = 0.01, alpha: float = 5.0,
                 k: float = 1.0, seed: int = 0, cutoff: float = 2.4):
        if n < 4 or n % 2:
            raise InputError(f"the packing needs an even number of particles >= 4, got {n}")
        self.n = n
        self.species = np.repeat([0, 1], n // 2)
        d = np.asarray(diameters, np.float64)
        side = math.sqrt(np.sum(np.pi * (d[self.species] / 2) ** 2) / phi)
        self.box0 = np.diag([side, side])
        rng = np.random.default_rng(seed)
        self.starts = rng.uniform(0.0, 1.0, (packings, n, 2))  # fractional coordinates
        self.params0 = {"sigma": d, "epsilon": np.full((2, 2), float(binding)),
                        "alpha": float(alpha), "k": float(k)}
        self.system = cg.particle_system(self.starts[0] * side, self.species, box=self.box0,
                                         kernel="harmonic_morse", params=self.params0,
                                         cutoff=cutoff, shift=True)
        self.energy = self.system.energy_fn()
        self.argmin = implicit_argmin(self._energy_z, null_modes=self._null_modes,
                                      tolerance=1e-9)

    # z = (fractional coordinates [n, 2], box deformation e [3]), flattened; the box stays in
    # reduced (lower-triangular) form [[L(1 + e0), 0], [L e2, L(1 + e1)]], so minimum images
    # stay exact while it deforms (every shape up to a rotation)
    def unpack(self, z):
        s, e = z[:-3].reshape(self.n, 2), z[-3:]
        side = float(self.box0[0, 0])
        box = side * jnp.array([[1.0 + e[0], 0.0], [e[2], 1.0 + e[1]]])
        return s @ box, box

    def _energy_z(self, z, params):
        x, box = self.unpack(z)
        return self.energy(x, box, params)

    def _null_modes(self, z):
        modes = jnp.zeros((2, z.shape[0]), z.dtype)
        for a in range(2):
            modes = modes.at[a, a:-3:2].set(1.0 / math.sqrt(self.n))
        return modes

    def starts_z(self):
        return jnp.concatenate([jnp.asarray(self.starts).reshape(len(self.starts), -1),
                                jnp.zeros((len(self.starts), 3))], axis=1)

    def params_of(self, log_design):
        """Pairs params from log diameters [2] and log binding energies (AA, AB, BB)."""
        ld, lb = log_design[:2], log_design[2:]
        b = jnp.exp(lb)
        table = jnp.array([[b[0], b[1]], [b[1], b[2]]])
        p = dict(self.system.params["Pairs"], sigma=jnp.exp(ld), epsilon=table)
        return {"Pairs": p}

    def log_design0(self):
        e = self.params0["epsilon"]
        return jnp.log(jnp.concatenate([jnp.asarray(self.params0["sigma"]),
                                        jnp.array([e[0, 0], e[0, 1], e[1, 1]])]))

    def poisson(self, log_design, z0):
        """(nu, relaxed z) of one packing from start z0 (implicit gradient in the design)."""
        params = self.params_of(log_design)
        z = self.argmin(params, z0)
        x, box = self.unpack(z)
        return poisson_ratio(self.energy, x, box, params), z


def design(target: float, *, n: int = 32, packings: int = 4, iterations: int = 40,
           learning_rate: float = 0.01, seed: int = 0) -> dict:
    """Move the ensemble-mean Poisson ratio toward ``target`` (Adam on log diameters and log
    binding energies). Returns the trajectory of nu and the final design."""
    if not -1.0 < target < 1.0:
        raise InputError(f"--target must lie in (-1, 1) (the 2D isotropic bounds), got {target}")
    pk = Packing(n=n, packings=packings, seed=seed)
    ensemble = jax.vmap(pk.poisson, in_axes=(None, 0))

    def loss(ld, z0s):
        nu, zs = ensemble(ld, z0s)
        return (jnp.mean(nu) - target) ** 2, (nu, zs)

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    ld, z0s = pk.log_design0(), pk.starts_z()
    opt = optax.adam(learning_rate)
    state = opt.init(ld)
    history = []
    for _ in range(iterations):
        (_, (nu, zs)), g = step(ld, z0s)
        history.append(float(jnp.mean(nu)))
        if abs(history[-1] - target) < 0.01:
            break
        updates, state = opt.update(g, state)
        ld = optax.apply_updates(ld, updates)
        z0s = zs  # warm start: stay in each packing's basin
    nu, _ = jax.jit(ensemble)(ld, z0s)
    p = pk.params_of(ld)["Pairs"]
    return {"poisson_ratio": float(jnp.mean(nu)), "target": target,
            "initial_poisson_ratio": history[0], "history": history,
            "per_packing": np.asarray(nu).tolist(),
            "diameters": np.asarray(p["sigma"]).tolist(),
            "binding_energies": np.asarray(p["epsilon"]).tolist(), "iterations": len(history)}


def plot(runs: list[dict], path: str) -> None:
    """nu of the ensemble per design iteration, one line per run (target dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for k, out in enumerate(runs):
        ax.plot(out["history"], f"C{k}-", label=f"target {out['target']:g}:"
                                                 f" reached {out['poisson_ratio']:.3f}")
        ax.axhline(out["target"], color=f"C{k}", ls="--", lw=0.8)
    ax.set_xlabel("design iteration (Adam, implicit gradient)")
    ax.set_ylabel("ensemble-mean Poisson ratio ν")
    ax.legend(fontsize=8)
    ax.set_title("harmonic–Morse packings, 4 × 32 particles, zero stress", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lattice", choices=["triangular"],
                    help="the closed-form check: nu of a triangular spring lattice")
    ap.add_argument("--target", type=float, help="design the packings toward this nu")
    ap.add_argument("--particles", type=int, default=32)
    ap.add_argument("--packings", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="PNG", help="with --target: plot nu per iteration")
    args = ap.parse_args(argv)
    try:
        if args.lattice:
            out = {"poisson_ratio": lattice_poisson_ratio()}
        elif args.target is not None:
            out = design(args.target, n=args.particles, packings=args.packings,
                         iterations=args.iterations, seed=args.seed)
        else:
            pk = Packing(n=args.particles, packings=args.packings, seed=args.seed)
            nu, _ = jax.jit(jax.vmap(pk.poisson, in_axes=(None, 0)))(pk.log_design0(),
                                                                     pk.starts_z())
            out = {"poisson_ratio": float(jnp.mean(nu)), "per_packing": np.asarray(nu).tolist()}
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.plot and "history" in out:
        plot([out], args.plot)
    if args.json and "history" in out:
        out = {k: out[k] for k in ("poisson_ratio", "target", "initial_poisson_ratio",
                                   "iterations")}
    print(json.dumps(out) if args.json else json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
