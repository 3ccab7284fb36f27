"""A user's own energy term plugs in through the term protocol: a uniform external field on
charged particles beside a built-in pair kernel, with forces, parameter gradients, a protocol
and dynamics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd.errors import InputError
from chronograd.interop.openmm import to_openmm
from chronograd.system import FunctionTerm, System

jax.config.update("jax_enable_x64", True)


def field_energy(positions, box, params):
    """-sum q_i E . x_i: a uniform field E [3] on charges q [N]."""
    return -jnp.sum(params["q"] * (positions @ params["E"]))


def _system():
    x = np.array([[0.0, 0.0, 0.0], [1.2, 0.1, 0.0], [0.3, 1.1, 0.2], [1.0, 1.0, 1.0]])
    base = cg.particle_system(x, kernel="soft_sphere",
                              params={"sigma": 1.5, "epsilon": 10.0, "alpha": 2.0})
    field = FunctionTerm("Field", field_energy, ("q", "E"))
    params = {**base.params, "Field": {"q": jnp.array([1.0, -1.0, 0.5, -0.5]),
                                       "E": jnp.array([2.0, 0.0, -1.0])}}
    return x, System(masses=base.masses, terms=(*base.terms, field), params=params)


def test_function_term_energy_forces_and_parameter_gradients():
    x, system = _system()
    terms = system.energy_terms(x)
    assert terms["Field"] == pytest.approx(float(field_energy(jnp.asarray(x), None,
                                                              system.params["Field"])))
    e, f = system.energy_and_forces(x)
    u = system.energy_fn()
    fd = np.zeros_like(x)
    for a in range(4):
        for k in range(3):
            d = np.zeros_like(x)
            d[a, k] = 1e-6
            fd[a, k] = -(float(u(x + d, None, system.params))
                         - float(u(x - d, None, system.params))) / 2e-6
    np.testing.assert_allclose(f, fd, rtol=1e-6, atol=1e-6)
    g = jax.grad(lambda p: u(jnp.asarray(x), None, p))(system.params)
    np.testing.assert_allclose(g["Field"]["E"], -np.asarray(system.params["Field"]["q"]) @ x)


def test_function_term_runs_dynamics_with_a_field_protocol():
    x, system = _system()
    integ = cg.dynamics.langevin(system, timestep=0.002, temperature=300.0)
    state = integ.init(x, key=jax.random.key(0))
    step = jax.jit(integ.step)
    for i in range(20):  # the field ramps up step by step
        p = {**system.params, "Field": dict(system.params["Field"],
                                           E=jnp.array([2.0, 0.0, -1.0]) * i / 20)}
        state = step(state, p)
    assert np.all(np.isfinite(np.asarray(state.positions)))


def test_function_term_bad_params_and_export_are_named():
    x, system = _system()
    bad = {**system.params, "Field": {"q": system.params["Field"]["q"]}}
    from chronograd.system.validate import check_system

    with pytest.raises(InputError, match="params\\['Field'\\] lacks \\['E'\\]"):
        check_system(System(masses=system.masses, terms=system.terms, params=bad), "mine")
    field_only = System(masses=system.masses, terms=system.terms[1:],
                        params={"Field": system.params["Field"]})
    with pytest.raises(InputError, match="FunctionTerm"):
        to_openmm(field_only)
