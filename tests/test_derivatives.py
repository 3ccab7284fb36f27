"""Autodiff derivatives vs finite differences, Hessian symmetry, invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import openmm.app as app
import pytest
from reference_systems import villin, water_box

import chronograd as cg


@pytest.fixture(scope="module")
def villin_vacuum():
    omm, pos, _ = villin(False)
    return cg.from_openmm(omm), jnp.asarray(pos)


@pytest.fixture(scope="module")
def small_water_pme():
    omm, pos, box = water_box(method=app.PME, cutoff=0.55, box_nm=1.2)
    return cg.from_openmm(omm), jnp.asarray(pos), jnp.asarray(box)


def central_difference(f, x, direction, h):
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


def test_forces_equal_finite_differences(villin_vacuum):
    system, x = villin_vacuum
    U = jax.jit(system.energy_fn())
    F = jax.jit(cg.forces_fn(system.energy_fn()))(x, None, system.params)
    rng = np.random.default_rng(0)
    for _ in range(5):
        v = jnp.asarray(rng.normal(size=x.shape))
        fd = central_difference(lambda y: U(y, None, system.params), x, v, 1e-6)
        assert float(-jnp.vdot(F, v)) == pytest.approx(float(fd), rel=1e-6, abs=1e-6)


def test_pme_forces_equal_finite_differences(small_water_pme):
    system, x, box = small_water_pme
    U = jax.jit(system.energy_fn())
    F = cg.forces_fn(system.energy_fn())(x, box, system.params)
    for atom, dim in [(0, 0), (7, 1), (100, 2)]:
        e = jnp.zeros_like(x).at[atom, dim].set(1.0)
        fd = central_difference(lambda y: U(y, box, system.params), x, e, 1e-6)
        assert float(-F[atom, dim]) == pytest.approx(float(fd), rel=1e-6, abs=1e-5)


def test_hessian_symmetric_and_equal_to_force_differences(small_water_pme):
    system, x, box = small_water_pme
    n = x.shape[0]
    H = np.asarray(jax.jit(cg.hessian_fn(system.energy_fn()))(x, box, system.params))
    H = H.reshape(3 * n, 3 * n)
    assert np.abs(H - H.T).max() <= 1e-8 * np.abs(H).max()
    F = jax.jit(cg.forces_fn(system.energy_fn()))
    h = 1e-5
    for k in (0, 5, 3 * n - 1):
        e = jnp.zeros(3 * n).at[k].set(1.0).reshape(n, 3)
        col = -(F(x + h * e, box, system.params) - F(x - h * e, box, system.params)) / (2 * h)
        np.testing.assert_allclose(H[:, k], np.asarray(col).ravel(), atol=2e-3 * np.abs(H).max())
    # the Hessian-vector product agrees with the dense Hessian
    v = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    hv = cg.hessian_vector_product_fn(system.energy_fn())(x, box, system.params, v)
    np.testing.assert_allclose(np.asarray(hv).ravel(), H @ np.asarray(v).ravel(), rtol=1e-9,
                               atol=1e-9 * np.abs(H).max())


def _scaled(params, direction, h):
    return jax.tree_util.tree_map(lambda p, d: p + h * d, params, direction)


def _random_direction(params, seed):
    """A random relative perturbation of every nonzero parameter. Zero parameters stay put:
    at epsilon = 0 the Lorentz-Berthelot mean sqrt(e_i e_j) has no derivative."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [jax.random.normal(k, p.shape) * jnp.abs(p) for k, p in
               zip(keys, leaves, strict=True)])


@pytest.mark.parametrize("which", ["vacuum", pytest.param("pme", marks=pytest.mark.slow)])
def test_param_gradient_and_mixed_partials_equal_finite_differences(which, villin_vacuum,
                                                                    small_water_pme):
    if which == "vacuum":
        system, x = villin_vacuum
        box = None
    else:
        system, x, box = small_water_pme
    U = system.energy_fn()
    params = system.params
    d = _random_direction(params, 2)
    h = 1e-6
    # dU/dparams . d
    g = cg.param_gradient_fn(U)(x, box, params)
    directional = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g),
                                                      jax.tree_util.tree_leaves(d), strict=True))
    fd = (U(x, box, _scaled(params, d, h)) - U(x, box, _scaled(params, d, -h))) / (2 * h)
    assert float(directional) == pytest.approx(float(fd), rel=1e-5)
    # mixed partial (d^2U/dx dparams) . d  vs  finite differences of dU/dx along d
    grad_x = jax.jit(jax.grad(U))
    mixed = cg.mixed_jvp_fn(U)(x, box, params, d)
    fd_mixed = (grad_x(x, box, _scaled(params, d, h)) - grad_x(x, box, _scaled(params, d, -h))) / (
        2 * h
    )
    np.testing.assert_allclose(np.asarray(mixed), np.asarray(fd_mixed), rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(fd_mixed).max()))
    # the VJP form: w^T (d^2U/dx dparams) . d equals <w, mixed . d>
    w = jax.random.normal(jax.random.PRNGKey(3), x.shape)
    vjp = cg.mixed_vjp_fn(U)(x, box, params, w)
    lhs = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(vjp),
                                             jax.tree_util.tree_leaves(d), strict=True))
    assert float(lhs) == pytest.approx(float(jnp.vdot(w, mixed)), rel=1e-9)


def test_translation_and_rotation_invariance_in_vacuum(villin_vacuum):
    system, x = villin_vacuum
    U = jax.jit(system.energy_fn())
    F = jax.jit(cg.forces_fn(system.energy_fn()))
    e0, f0 = U(x, None, system.params), F(x, None, system.params)
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    y = x @ q.T + jnp.asarray(rng.normal(size=3) * 5)
    assert float(U(y, None, system.params)) == pytest.approx(float(e0), rel=1e-11)
    np.testing.assert_allclose(np.asarray(F(y, None, system.params)), np.asarray(f0) @ q.T,
                               atol=1e-7)
    # net force and torque vanish
    assert np.abs(np.asarray(f0).sum(0)).max() < 1e-8
    assert np.abs(np.cross(np.asarray(x), np.asarray(f0)).sum(0)).max() < 1e-6


@pytest.mark.parametrize("method", ["PME", "LJPME", "NoCutoff"])
def test_total_energy_program_equals_sum_of_terms(method):
    """energy_fn evaluates the nonbonded pairs as one summed kernel output (one force pass);
    its value and derivatives in positions, parameters and the box, reverse and forward, are
    those of the reported terms' sum."""
    omm, pos, box = water_box(method=getattr(app, method), cutoff=0.55, box_nm=1.2)
    system = cg.from_openmm(omm)
    x = jnp.asarray(pos)
    b = None if method == "NoCutoff" else jnp.asarray(box)
    terms = system.energy_terms_fn()

    def summed(y, bb, p):
        return sum(terms(y, bb, p).values())

    total = system.energy_fn()
    assert float(total(x, b, system.params)) == pytest.approx(
        float(summed(x, b, system.params)), rel=1e-12)
    argnums = (0, 2) if b is None else (0, 1, 2)
    expect = jax.grad(summed, argnums)(x, b, system.params)
    got = jax.grad(total, argnums)(x, b, system.params)
    for e, g in zip(jax.tree_util.tree_leaves(expect), jax.tree_util.tree_leaves(got),
                    strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-9,
                                   atol=1e-9 * float(jnp.max(jnp.abs(e))) + 1e-12)
    v = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
    hv_expect = jax.jvp(jax.grad(summed), (x, b, system.params), (v, None if b is None else
                        jnp.zeros_like(b), jax.tree_util.tree_map(jnp.zeros_like,
                                                                  system.params)))[1]
    hv = jax.jvp(jax.grad(total), (x, b, system.params), (v, None if b is None else
                 jnp.zeros_like(b), jax.tree_util.tree_map(jnp.zeros_like, system.params)))[1]
    np.testing.assert_allclose(np.asarray(hv), np.asarray(hv_expect), rtol=1e-8,
                               atol=1e-8 * float(jnp.max(jnp.abs(hv_expect))))
