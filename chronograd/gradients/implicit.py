"""Implicit differentiation through energy minimization.

At a minimum x*(theta) the gradient vanishes, so H dx*/dtheta = -d2U/dx dtheta. For a scalar
loss L(x*, theta) the vector-Jacobian product needs one linear solve H w = dL/dx*, done by
conjugate gradients on Hessian-vector products (never forming H), and then
dL/dtheta = dL/dtheta|_direct - w^T d2U/dx dtheta. The minimizer is never unrolled.

H is singular along rigid-body motions (3 translations and 3 rotations in vacuum, 3
translations in a periodic box). Those modes are shifted out of the null space
((H + s P) w = P_perp g, with P the projector onto them) so CG solves on the rest; a loss
invariant under rigid motions (distances, angles, energies) gets the exact gradient.

    x_star = minimized_positions(system, x0)            # differentiable in params
    loss = lambda p: observable(x_star(p), None, p)
    jax.grad(loss)(system.params)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.gradients.common import GradientResult, flat_params
from chronograd.minimize.lbfgs import lbfgs_run
from chronograd.system import structure as st


def rigid_modes(x, periodic: bool, mask=None):
    """Orthonormal rigid-body displacement modes [M, N, d] at positions ``x`` [N, d]: the d
    translations, then, without a box, the rotations about the centroid (3 in 3D, 1 in 2D).
    Modes that vanish (rotation about the axis of a linear molecule) come back as zero rows.
    ``mask`` [N] (bool): only these atoms move (padded atoms of a batch get zero rows)."""
    n, dim = x.shape
    modes = [jnp.zeros((n, dim), x.dtype).at[:, a].set(1.0) for a in range(dim)]
    if mask is not None:
        w = mask.astype(x.dtype)[:, None]
        modes = [m * w for m in modes]
    if not periodic:
        if mask is None:
            c = x - jnp.mean(x, axis=0)
        else:
            c = (x - jnp.sum(x * w, axis=0) / jnp.sum(w)) * w
        if dim == 3:
            modes += [jnp.cross(jnp.eye(3, dtype=x.dtype)[a], c) for a in range(3)]
        else:
            modes.append(jnp.stack([-c[:, 1], c[:, 0]], axis=-1))
    m = jnp.stack(modes).reshape(len(modes), -1)
    _, sv, vt = jnp.linalg.svd(m, full_matrices=False)
    keep = sv > 1e-8 * sv[0]
    return (vt * keep[:, None]).reshape(len(modes), n, dim)


def _check(system):
    if len(system.constraints):
        raise InputError("implicit differentiation through minimization does not support"
                         " constraints yet; build the system without them (e.g. the"
                         " unconstrained Sage force field)")
    if system.virtual_sites:
        raise InputError("implicit differentiation through minimization does not support"
                         " virtual sites yet")


def _minimize(U, x0, box, params, tolerance, max_iterations, mask=None):
    """L-BFGS from ``x0`` to RMS force ``tolerance`` (pure; x0 and box are arguments). With
    ``mask`` [N] the RMS is over the real atoms (padded ones have zero force)."""
    n = x0.size if mask is None else 3.0 * jnp.sum(mask)
    flat, _, _ = lbfgs_run(lambda f: U(f.reshape(x0.shape), box, params), x0.ravel(),
                           max_iterations=max_iterations, tolerance=tolerance,
                           rms_force=lambda g: jnp.sqrt(jnp.sum(g * g) / n))
    return flat.reshape(x0.shape)


def _solve(U, x_star, box, params, g, cg_tolerance, maxiter, shift, mask=None, modes=None):
    """w with (H + shift P) w = P_perp g; returns (w, relative residual) (pure). ``modes``
    [M, *x.shape] orthonormal zero modes (default: the rigid-body modes of ``x_star``)."""
    grad_x = jax.grad(U, argnums=0)
    if modes is None:
        modes = rigid_modes(x_star, box is not None, mask)
    axes = list(range(1, modes.ndim))

    def project(v):
        return v - jnp.tensordot(jnp.tensordot(modes, v, axes=(axes, list(range(v.ndim)))),
                                 modes, axes=1)

    def op(v):
        hv = jax.jvp(lambda y: grad_x(y, box, params), (x_star,), (v,))[1]
        return hv + shift * (v - project(v))

    rhs = project(g)
    w, _ = jax.scipy.sparse.linalg.cg(op, rhs, tol=cg_tolerance, maxiter=maxiter)
    res = jnp.linalg.norm(op(w) - rhs) / jnp.maximum(jnp.linalg.norm(rhs), 1e-300)
    return w, res


def _implicit_minimum(minimize, solve, coupling):
    """``x_star(params) = minimize(params)`` with the implicit VJP: ``w = solve(x, params, g)``,
    then ``-d/dparams coupling(w, x, params)`` (coupling = w . dU/dx)."""

    @jax.custom_vjp
    def x_star(params):
        return minimize(params)

    def fwd(params):
        x = minimize(params)
        return x, (x, params)

    def bwd(res, g):
        x, params = res
        w = solve(x, params, g)
        d = jax.grad(lambda p: coupling(w, x, p))(params)
        return (jax.tree_util.tree_map(lambda a: -a, d),)

    x_star.defvjp(fwd, bwd)
    return x_star


def minimized_positions(system, x0, box=None, *, tolerance: float = 1e-4,
                        max_iterations: int = 20000, cg_tolerance: float = 1e-10,
                        cg_max_iterations: int | None = None, shift: float = 1.0):
    """``x_star(params) -> positions`` at the minimum reached by L-BFGS from ``x0``;
    differentiable in params by implicit differentiation (a custom VJP).

    ``tolerance``: RMS force (kJ/mol/nm) the minimizer must reach; the implicit gradient is
    exact only at a stationary point, so it is tighter than the dynamics default (10).
    """
    _check(system)
    x0, box = system.check_inputs(x0, box)
    x0 = jnp.asarray(x0)
    box = None if box is None else jnp.asarray(box)
    U = system.energy_fn()
    grad_x = jax.grad(U, argnums=0)
    maxiter = cg_max_iterations or 10 * 3 * x0.shape[0]

    def minimize(params):
        return _minimize(U, x0, box, params, tolerance, max_iterations)

    def solve(x_star, params, g):
        """w with (H + shift P) w = P_perp g; returns (w, relative residual)."""
        return _solve(U, x_star, box, params, g, cg_tolerance, maxiter, shift)

    x_star = _implicit_minimum(minimize, lambda x, p, g: solve(x, p, g)[0],
                               lambda w, x, p: jnp.vdot(w, grad_x(x, box, p)))
    x_star.solve = solve
    x_star.minimize = minimize
    x_star.box = box
    return x_star


def implicit_argmin(energy, *, null_modes=None, tolerance: float = 1e-4,
                    max_iterations: int = 20000, cg_tolerance: float = 1e-10,
                    shift: float = 1.0):
    """Pure ``x_star(params, x0)``: the minimum of ``energy(x, params)`` that L-BFGS reaches
    from ``x0`` (any array shape; RMS gradient below ``tolerance``), with the implicit VJP in
    ``params`` (zero in ``x0``, which only picks the basin). ``null_modes(x)`` gives the
    orthonormal exact zero modes [M, *x.shape] of the Hessian (None: there are none). The
    start is an argument, so a design loop warm-starts from the last minimum and an ensemble
    of starts is one ``jax.vmap``."""

    def U(x, box, params):
        return energy(x, params)

    grad_x = jax.grad(energy, argnums=0)

    @jax.custom_vjp
    def x_star(params, x0):
        return _minimize(U, x0, None, params, tolerance, max_iterations)

    def fwd(params, x0):
        x = x_star(params, x0)
        return x, (x, params)

    def bwd(res, g):
        x, params = res
        modes = (jnp.zeros((0, *x.shape), x.dtype) if null_modes is None else null_modes(x))
        w = _solve(U, x, None, params, g, cg_tolerance, 10 * x.size, shift, modes=modes)[0]
        d = jax.grad(lambda p: jnp.vdot(w, grad_x(x, p)))(params)
        return jax.tree_util.tree_map(lambda a: -a, d), jnp.zeros_like(x)

    x_star.defvjp(fwd, bwd)
    return x_star


def minimum_function(system, box=None, **options):
    """``implicit_argmin`` of a system's energy at a fixed ``box`` (rigid-body zero modes);
    ``options`` as ``implicit_argmin``."""
    _check(system)
    U = system.energy_fn()
    box = None if box is None else jnp.asarray(box)
    return implicit_argmin(lambda x, p: U(x, box, p),
                           null_modes=lambda x: rigid_modes(x, box is not None), **options)


def batched_minimized_positions(batch, positions, *, tolerance: float = 1e-4,
                                max_iterations: int = 20000, cg_tolerance: float = 1e-10,
                                shift: float = 1.0):
    """``x_star(params)`` -> per bucket of ``batch`` (a ``SystemBatch``, vacuum) the minima
    [B, N, 3] reached by L-BFGS from ``positions`` (one [n_i, 3] array per system), as
    ``minimized_positions`` gives them one system at a time, with the same implicit VJP.

    One ``vmap``ped minimization and one ``vmap``ped conjugate-gradient solve per bucket:
    a data set compiles once per bucket shape, not once per molecule. Padded atoms have zero
    force, so they never move, the RMS force is taken over real atoms only, and the rigid
    modes are those of the real atoms; system m of a bucket sits at ``[row, :n_atoms]``.
    """
    for system in batch.systems:
        _check(system)
    x0 = batch.pad_positions(positions)
    structures = batch.structures()
    masks = tuple(jnp.asarray(np.arange(b.n_padded)[None, :] < np.asarray(b.n_atoms)[:, None])
                  for b in batch.buckets)

    def U(x, s, p):
        return st.total_energy(s, x, None, p)

    grad_x = jax.grad(U)

    def one(s):  # system s's energy in the (positions, box, params) form
        return lambda y, box, p: U(y, s, p)

    def minimize(p):
        return tuple(jax.vmap(lambda x, s, m: _minimize(one(s), x, None, p, tolerance,
                                                        max_iterations, m))(x, s, m)
                     for x, s, m in zip(x0, structures, masks, strict=True))

    def solve(xs, p, gs):
        def solve_one(x, s, m, g):
            return _solve(one(s), x, None, p, g, cg_tolerance, 30 * x.shape[0], shift, m)[0]

        return tuple(jax.vmap(solve_one)(x, s, m, g)
                     for x, s, m, g in zip(xs, structures, masks, gs, strict=True))

    def coupling(ws, xs, p):  # sum over systems of w_m . dU_m/dx at x_m: one reverse pass
        return sum(jnp.sum(jax.vmap(lambda w, x, s: jnp.vdot(w, grad_x(x, s, p)))(w, x, s))
                   for w, x, s in zip(ws, xs, structures, strict=True))

    return _implicit_minimum(minimize, solve, coupling)


def _implicit_run(U, observable, options, x0, box, fp, phi):
    """One compiled pass: minimize, then the implicit VJP written out (the same math as the
    custom VJP of x_star, plus the numbers the verdict needs)."""
    tolerance, max_iterations, cg_tolerance, maxiter, shift = options
    p = fp.params(phi)
    x = _minimize(U, x0, box, p, tolerance, max_iterations)
    value, (g_x, g_direct) = jax.value_and_grad(
        lambda y, ph: observable(y, box, fp.params(ph)), argnums=(0, 1))(x, phi)
    w, residual = _solve(U, x, box, p, g_x, cg_tolerance, maxiter, shift)
    grad_x = jax.grad(U, argnums=0)
    mixed = jax.grad(lambda ph: jnp.vdot(w, grad_x(x, box, fp.params(ph))))(phi)
    f = -grad_x(x, box, p)
    return value, g_direct - mixed, residual, jnp.sqrt(jnp.mean(f * f)), U(x, box, p)


# Module level: the system's energy function (one per system), the observable and the options
# are static, start positions, box and theta are arguments, so repeated calls (new starts,
# new parameters) reuse one compiled program.
_IMPLICIT_RUN = jax.jit(_implicit_run, static_argnums=(0, 1, 2))


def implicit_gradient(system, positions, observable, *, box=None, params=None, wrt=None,
                      tolerance: float = 1e-4, max_iterations: int = 20000,
                      cg_tolerance: float = 1e-10) -> GradientResult:
    """d/dtheta of ``observable(x*(theta), box, theta)`` at the minimum reached from
    ``positions``, with diagnostics (RMS force at the minimum, the CG residual) and a
    verdict."""
    _check(system)
    fp = flat_params(system.params if params is None else params, wrt)
    x0, box = system.check_inputs(positions, box)
    x0 = jnp.asarray(x0)
    box = None if box is None else jnp.asarray(box)
    options = (float(tolerance), int(max_iterations), float(cg_tolerance),
               10 * 3 * x0.shape[0], 1.0)
    run = functools.partial(_IMPLICIT_RUN, system.energy_fn(), observable, options, x0, box,
                            fp)
    value, grad, residual, rms, energy = run(fp.phi0)
    rms = float(rms)
    diag = {"rms_force": rms, "cg_relative_residual": float(residual),
            "minimized_energy": float(energy)}
    grad = np.asarray(grad, np.float64)
    if rms > 10 * tolerance:
        verdict = (f"untrustworthy: the minimizer stopped at RMS force {rms:.3g} kJ/mol/nm"
                   f" (> {tolerance:g}); raise max_iterations or start closer to a minimum")
    elif not float(residual) < 1e-6:
        verdict = (f"untrustworthy: conjugate gradients left a relative residual"
                   f" {float(residual):.3g}; the Hessian may be indefinite (a saddle point)")
    else:
        verdict = (f"trustworthy: stationary to RMS force {rms:.2g} kJ/mol/nm, linear solve"
                   f" residual {float(residual):.1g}")
    return GradientResult(float(value), fp.to_pytree(grad), grad, fp.indices, None, diag,
                          verdict, "implicit")
