"""Equilibrium propagation (Scellier & Bengio, Front. Comput. Neurosci. 2017) and coupled
learning (Stern, Hexner, Rocks & Liu, Phys. Rev. X 11, 021045 (2021)): the gradient of a cost
at an energy minimum from two relaxed states instead of a linear solve.

With the free state x_0 = argmin E(x; theta) and the nudged states
x_beta = argmin E(x; theta) + beta C(x),

    dC(x_0(theta))/dtheta = lim_{beta -> 0} [dE/dtheta(x_beta) - dE/dtheta(x_-beta)] / (2 beta)

(the one-sided form (x_beta vs x_0) / beta converges as O(beta), the symmetric one as
O(beta^2)). Only local quantities at two equilibria enter, which is why physical networks can
learn this way; here it is the check on — and the alternative to — implicit differentiation
(``gradients.implicit``), which it equals as beta -> 0.
"""

from __future__ import annotations

import jax

from chronograd.gradients.implicit import _minimize


def relax(energy, x0, params, *, cost=None, beta: float = 0.0, tolerance: float = 1e-10,
          max_iterations: int = 20000):
    """argmin of energy(x, params) + beta cost(x) reached by L-BFGS from ``x0`` (pure)."""
    def total(x, box, p):
        e = energy(x, p)
        return e if cost is None else e + beta * cost(x)

    return _minimize(total, x0, None, params, tolerance, max_iterations)


def equilibrium_propagation(energy, cost, x_free, params, beta: float, *,
                            symmetric: bool = True, tolerance: float = 1e-10,
                            max_iterations: int = 20000):
    """Estimate of d cost(x*(params)) / d params at the free minimum ``x_free`` (a pytree like
    ``params``), from nudged minima at +beta (and -beta when ``symmetric``)."""
    def nudged(b):
        return relax(energy, x_free, params, cost=cost, beta=b, tolerance=tolerance,
                     max_iterations=max_iterations)

    de = jax.grad(energy, argnums=1)
    plus = de(nudged(beta), params)
    if symmetric:
        minus = de(nudged(-beta), params)
        return jax.tree_util.tree_map(lambda a, b: (a - b) / (2.0 * beta), plus, minus)
    free = de(x_free, params)
    return jax.tree_util.tree_map(lambda a, b: (a - b) / beta, plus, free)


def coupled_learning_step(energy, cost, x_free, params, beta: float, learning_rate: float,
                          **options):
    """One coupled-learning update: params - learning_rate * (EP gradient estimate)."""
    g = equilibrium_propagation(energy, cost, x_free, params, beta, **options)
    return jax.tree_util.tree_map(lambda p, d: p - learning_rate * d, params, g)

