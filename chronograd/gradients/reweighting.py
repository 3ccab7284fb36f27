"""Exponential (Zwanzig) reweighting in JAX: the one implementation used by the ensemble
estimators (``ensemble.py``) and the liquid target (``fit/liquid.py``).

Frames x_i sampled with energy U_old are reweighted to U_new with
w_i = exp(-beta (U_new(x_i) - U_old(x_i))) / sum_j (...), computed as a log-softmax so that
large energy differences neither overflow nor lose precision. Differentiable in the energies
(so ``jax.grad`` of a reweighted average reaches theta). Zwanzig, J. Chem. Phys. 22, 1420
(1954), doi:10.1063/1.1740409.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp


def exp_log_weights(u_new, u_old, beta=1.0):
    """[n] normalized log weights of the frames (kJ/mol energies with beta in mol/kJ, or
    reduced energies with beta = 1)."""
    return jax.nn.log_softmax(-beta * (jnp.asarray(u_new) - jnp.asarray(u_old)))


def exp_weights(u_new, u_old, beta=1.0):
    """[n] normalized weights (sum to 1)."""
    return jnp.exp(exp_log_weights(u_new, u_old, beta))


def effective_sample_size(log_weights):
    """Kish's (sum w)^2 / sum w^2 from (not necessarily normalized) log weights."""
    lw = jnp.asarray(log_weights)
    return jnp.exp(2 * logsumexp(lw) - logsumexp(2 * lw))
