"""Optimizers for the fit loop, in the optax shape: ``init(phi) -> state`` and
``step(state, evaluator) -> (state, info)``.

The objective is evaluated on the host (possibly on Dask workers), so the loop is a host loop;
each state is a small pytree of NumPy arrays and numbers stored as data in a checkpoint, and a
step depends only on the state (random keys included), so a resumed fit repeats an
uninterrupted one exactly.

- ``adam``: optax.adam on the gradient.
- ``lbfgs``: optax's L-BFGS direction (``optax.scale_by_lbfgs``) with a backtracking Armijo line
  search on the host (optax.lbfgs's own line search needs a jit-traceable objective).
- ``levenberg_marquardt``: Gauss-Newton steps on the stacked residuals with Marquardt's
  diagonal damping; the Jacobian comes from jax.jacfwd / jax.jacrev (vmapped, one call).
- ``neuroevolution``: gradient-free baseline (Whitelam & Tamblyn 2021): mutate all parameters
  by Gaussian noise, accept by the Metropolis rule at temperature ``temperature`` (0: only
  improvements), adapting the mutation scale.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from chronograd.errors import InputError


class Optimizer(NamedTuple):
    init: Any
    step: Any
    name: str


def _as_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _as_jax(tree):
    return jax.tree_util.tree_map(jnp.asarray, tree)


def adam(learning_rate: float = 0.05) -> Optimizer:
    tx = optax.adam(learning_rate)
    update = jax.jit(tx.update)

    def init(phi):
        phi = np.asarray(phi, float)
        return {"phi": phi, "opt": _as_numpy(tx.init(phi)), "loss": None}

    def step(state, ev):
        loss, grad, parts = ev.value_and_grad(state["phi"])
        updates, opt = update(jnp.asarray(grad), _as_jax(state["opt"]), jnp.asarray(state["phi"]))
        phi = np.asarray(optax.apply_updates(state["phi"], updates))
        info = {"loss": loss, "targets": parts, "grad_norm": float(np.linalg.norm(grad))}
        return {"phi": phi, "opt": _as_numpy(opt), "loss": loss}, info

    return Optimizer(init, step, "adam")


@functools.cache
def _lbfgs_transform(memory_size: int):
    """optax's L-BFGS direction and its update compiled once per memory size (one call
    instead of dozens of eager ops per step; shared by every lbfgs() optimizer)."""
    tx = optax.scale_by_lbfgs(memory_size=memory_size)
    return tx, jax.jit(tx.update)


def lbfgs(memory_size: int = 10, max_backtracks: int = 20, c1: float = 1e-4) -> Optimizer:
    tx, update = _lbfgs_transform(int(memory_size))

    def init(phi):
        phi = np.asarray(phi, float)
        return {"phi": phi, "opt": _as_numpy(tx.init(phi)), "loss": None, "grad": None}

    def step(state, ev):
        phi = state["phi"]
        if state["grad"] is None:
            loss, grad, parts = ev.value_and_grad(phi)
        else:
            loss, grad, parts = state["loss"], state["grad"], state["parts"]
        direction, opt = update(jnp.asarray(grad), _as_jax(state["opt"]), jnp.asarray(phi))
        d = -np.asarray(direction)
        slope = float(grad @ d)
        if not slope < 0:  # not a descent direction: restart along -grad
            d, slope = -grad, -float(grad @ grad)
        t = 1.0
        for _ in range(max_backtracks):
            new = phi + t * d
            new_loss, new_grad, new_parts = ev.value_and_grad(new)
            if np.isfinite(new_loss) and new_loss <= loss + c1 * t * slope:
                break
            t *= 0.5
        else:  # no decrease found: stay (converged to line-search precision)
            new, new_loss, new_grad, new_parts = phi, loss, grad, parts
        info = {"loss": new_loss, "targets": new_parts,
                "grad_norm": float(np.linalg.norm(new_grad)), "step_size": t}
        return {"phi": np.asarray(new), "opt": _as_numpy(opt), "loss": new_loss,
                "grad": np.asarray(new_grad), "parts": new_parts}, info

    return Optimizer(init, step, "lbfgs")


def levenberg_marquardt(damping: float = 1e-2, factor: float = 3.0,
                        max_tries: int = 10) -> Optimizer:
    def init(phi):
        return {"phi": np.asarray(phi, float), "damping": float(damping), "r": None,
                "J": None}

    def step(state, ev):
        phi, lam = state["phi"], state["damping"]
        if state["r"] is None:
            r, J, parts = ev.residuals_and_jacobian(phi)
            state = dict(state, samples=ev.samples(), noise=ev.noise(phi))
        else:
            r, J, parts = state["r"], state["J"], state["parts"]
        loss = float(r @ r)
        samples, noise = state.get("samples"), state.get("noise", 0.0)
        JtJ, Jtr = J.T @ J, J.T @ r
        diag = np.diag(JtJ).copy()
        diag[diag == 0] = 1.0
        for _ in range(max_tries):
            delta = np.linalg.solve(JtJ + lam * np.diag(diag), -Jtr)
            new = phi + delta
            r_new, J_new, parts_new = ev.residuals_and_jacobian(new)
            new_loss = float(r_new @ r_new)
            # Losses from one sample compare exactly; after a re-simulation the decrease
            # must exceed the two losses' combined statistical noise.
            new_samples, new_noise = ev.samples(), ev.noise(new)
            margin = 0.0 if new_samples == samples else float(np.hypot(noise, new_noise))
            if np.isfinite(new_loss) and new_loss < loss - margin:
                lam = max(lam / factor, 1e-9)
                state = {"phi": new, "damping": lam, "r": r_new, "J": J_new,
                         "parts": parts_new, "samples": new_samples, "noise": new_noise}
                info = {"loss": new_loss, "targets": parts_new, "damping": lam,
                        "grad_norm": float(np.linalg.norm(2 * J_new.T @ r_new))}
                if new_noise:
                    info["loss_noise"] = new_noise
                return state, info
            lam *= factor
        info = {"loss": loss, "targets": parts, "damping": lam,
                "grad_norm": float(np.linalg.norm(2 * Jtr))}
        if noise:
            info["loss_noise"] = noise
        return {"phi": phi, "damping": lam, "r": r, "J": J, "parts": parts,
                "samples": samples, "noise": noise}, info

    return Optimizer(init, step, "levenberg-marquardt")


def neuroevolution(mutation_scale: float = 0.1, temperature: float = 0.0, seed: int = 0,
                   adapt: bool = True) -> Optimizer:
    """One mutation (one objective evaluation) per step."""

    def init(phi):
        return {"phi": np.asarray(phi, float), "loss": None, "parts": None,
                "scale": float(mutation_scale), "key": np.asarray(jax.random.key_data(
                    jax.random.key(seed))), "accepted": 0, "tried": 0}

    def step(state, ev):
        phi, loss, parts = state["phi"], state["loss"], state["parts"]
        if loss is None:
            loss, parts = ev.value(phi)
        key, sub, acc_key = jax.random.split(jax.random.wrap_key_data(state["key"]), 3)
        trial = phi + state["scale"] * np.asarray(jax.random.normal(sub, phi.shape))
        new_loss, new_parts = ev.value(trial)
        u = float(jax.random.uniform(acc_key))
        accept = np.isfinite(new_loss) and (
            new_loss <= loss or (temperature > 0 and u < np.exp(-(new_loss - loss) / temperature)))
        scale = state["scale"]
        if adapt:  # aim at ~20% acceptance, as evolution strategies do
            scale *= 1.1 if accept else 0.975
        if accept:
            phi, loss, parts = trial, new_loss, new_parts
        state = {"phi": phi, "loss": loss, "parts": parts, "scale": scale,
                 "key": np.asarray(jax.random.key_data(key)),
                 "accepted": state["accepted"] + int(accept), "tried": state["tried"] + 1}
        return state, {"loss": loss, "targets": parts, "accepted": bool(accept),
                       "mutation_scale": scale}

    return Optimizer(init, step, "neuroevolution")


OPTIMIZERS = {"adam": adam, "lbfgs": lbfgs, "levenberg-marquardt": levenberg_marquardt,
              "neuroevolution": neuroevolution}


def make_optimizer(method: str, **options) -> Optimizer:
    if method not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {method!r}; choose one of {', '.join(OPTIMIZERS)}")
    try:
        return OPTIMIZERS[method](**options)
    except TypeError as e:
        raise InputError(f"optimizer {method!r}: {e}") from None
