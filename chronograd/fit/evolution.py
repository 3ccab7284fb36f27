"""Neuroevolution as a pure JAX step (Whitelam, Selin, Park & Tamblyn, Nat. Commun. 2021):
mutate all parameters by Gaussian noise of scale sigma and accept by the Metropolis rule at
inverse temperature beta. For small sigma the mean accepted mutation is

    E[dtheta 1_accepted] = -(beta sigma^2 / 2) grad U + O(sigma^3),

i.e. neuroevolution is noisy gradient descent with learning rate beta sigma^2 / 2 — the
baseline the gradient-based designs are compared with. ``fit.optimizers.neuroevolution`` is
the host-side optimizer of ``chronograd fit``; this is the vectorizable kernel for designs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mutation_step(loss_fn, theta, loss, key, sigma: float, beta: float):
    """One mutation of ``theta`` (its loss ``loss`` known): (theta', loss', accepted)."""
    k1, k2 = jax.random.split(key)
    trial = theta + sigma * jax.random.normal(k1, theta.shape, theta.dtype)
    new = loss_fn(trial)
    accept = jnp.isfinite(new) & (jax.random.uniform(k2) < jnp.exp(-beta * (new - loss)))
    return jnp.where(accept, trial, theta), jnp.where(accept, new, loss), accept


def mean_accepted_mutation(loss_fn, theta, key, sigma: float, beta: float, n: int):
    """Mean of (theta' - theta) over ``n`` independent mutations from ``theta``."""
    loss = loss_fn(theta)
    one = lambda k: mutation_step(loss_fn, theta, loss, k, sigma, beta)[0] - theta  # noqa: E731
    return jnp.mean(jax.vmap(one)(jax.random.split(key, n)), axis=0)


def evolve(loss_fn, theta, key, sigma: float, beta: float, n_steps: int):
    """``n_steps`` mutations in sequence: (final theta, loss after every step [n_steps])."""
    def body(carry, k):
        th, lo = carry
        th, lo, _ = mutation_step(loss_fn, th, lo, k, sigma, beta)
        return (th, lo), lo

    (theta, _), losses = jax.lax.scan(body, (theta, loss_fn(theta)),
                                      jax.random.split(key, n_steps))
    return theta, losses
