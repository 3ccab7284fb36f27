"""Derivatives of an energy function U(positions, box, params), all by autodiff.

Every function here takes a pure ``U`` (e.g. ``system.energy_fn()``) and returns a pure
function with the same leading arguments. Nothing dense is formed except by ``hessian``,
which is meant for small systems; use the vector products for anything large.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def forces_fn(U):
    """F(positions, box, params, *rest) = -dU/dx, [N, 3] kJ/mol/nm."""
    grad = jax.grad(U, argnums=0)
    return lambda x, box, params, *rest: -grad(x, box, params, *rest)


def param_gradient_fn(U):
    """dU/dparams(positions, box, params, *rest) -> pytree like params, kJ/mol per unit."""
    return jax.grad(U, argnums=2)


def hessian_vector_product_fn(U):
    """Hv(positions, box, params, v [N, 3], *rest) = (d^2U/dx^2) v, by forward-over-reverse."""
    grad = jax.grad(U, argnums=0)

    def hvp(x, box, params, v, *rest):
        return jax.jvp(lambda y: grad(y, box, params, *rest), (x,), (v,))[1]

    return hvp


def hessian_fn(U):
    """Dense Hessian [N, 3, N, 3] (kJ/mol/nm^2). Small systems only: memory is 9 N^2."""
    return jax.hessian(U, argnums=0)


def mixed_jvp_fn(U):
    """(d^2U/dx dparams) . dparams -> [N, 3]: how the gradient in x moves along dparams."""
    grad = jax.grad(U, argnums=0)

    def mixed_jvp(x, box, params, dparams, *rest):
        return jax.jvp(lambda p: grad(x, box, p, *rest), (params,), (dparams,))[1]

    return mixed_jvp


def mixed_vjp_fn(U):
    """w^T (d^2U/dx dparams) -> pytree like params, for w [N, 3]: d/dparams of <w, dU/dx>."""
    grad = jax.grad(U, argnums=0)

    def mixed_vjp(x, box, params, w, *rest):
        return jax.grad(lambda p: jnp.vdot(w, grad(x, box, p, *rest)))(params)

    return mixed_vjp
