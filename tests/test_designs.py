"""Worked designs against closed forms: the optimal trap protocol (Schmiedl & Seifert)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chronograd.dynamics.protocols import chebyshev, piecewise_linear

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples", "designs"))

import optimal_trap  # noqa: E402

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)


def test_protocol_parameterizations():
    t = jnp.linspace(0.0, 2.0, 5)
    assert np.allclose(piecewise_linear(jnp.array([0.0, 1.0, 0.0]), t, 2.0),
                       [0, 0.5, 1, 0.5, 0])
    # T_0 + 2 T_1 + 3 T_2 at u = 2t/T - 1
    u = np.asarray(2 * t / 2.0 - 1)
    assert np.allclose(chebyshev(jnp.array([1.0, 2.0, 3.0]), t, 2.0),
                       1 + 2 * u + 3 * (2 * u * u - 1))


def test_mean_work_gradient_equals_finite_differences():
    works = jax.jit(optimal_trap.make_mean_work(1.0, 1.0, 40), static_argnums=2)
    key = jax.random.key(3)
    mean = lambda k: jnp.mean(works(k, key, 256))  # noqa: E731
    knots = jnp.linspace(0.0, 1.0, 5)
    g = jax.grad(mean)(knots)
    for i in (0, 2, 4):
        e = jnp.zeros(5).at[i].set(1e-5)
        fd = (mean(knots + e) - mean(knots - e)) / 2e-5
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)


def test_learned_protocol_reaches_the_schmiedl_seifert_optimum():
    out = optimal_trap.run(1.0, 1.0)
    se = np.hypot(out["stderr_learned"], out["stderr_linear"])
    assert out["stderr_learned"] < 0.01 * out["work_learned"]
    # the linear ramp's simulated work equals its closed form (checks the work estimator)
    assert abs(out["work_linear"] - out["work_linear_theory"]) < 3 * out["stderr_linear"]
    # the learned protocol reaches D^2/(T+2) within noise and discretization (dt = T/100)
    assert abs(out["work_learned"] - out["work_theory"]) < 3 * out["stderr_learned"] + 0.005
    assert out["work_linear"] - out["work_learned"] > 5 * se
    # ... with the theory's jumps at both ends: lambda(0+) ~ D/(T+2), lambda(T-) ~ D(T+1)/(T+2)
    assert out["knots"][0] == pytest.approx(1 / 3, abs=0.08)
    assert out["knots"][-1] == pytest.approx(2 / 3, abs=0.08)


def test_command_line_prints_the_three_works():
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "designs", "optimal_trap.py"),
         "--duration", "1", "--distance", "1", "--json", "--iterations", "5",
         "--trajectories", "2000"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"work_learned", "work_linear", "work_theory"}
    assert out["work_theory"] == pytest.approx(1 / 3)
    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "designs", "optimal_trap.py"),
         "--duration", "-1"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--duration must be a positive number" in bad.stderr


def test_mean_accepted_mutation_follows_the_gradient():
    """Neuroevolution on the trap design: E[accepted dtheta] = -(beta sigma^2 / 2) grad U for
    small a = beta sigma |grad U|; for a locally linear U it is exactly that times
    2 exp(a^2 / 2) Phi(-a) (Stein's lemma), which the measured mean must follow."""
    from scipy.stats import norm

    from chronograd.fit.evolution import mean_accepted_mutation

    works = optimal_trap.make_mean_work(1.0, 1.0, 20)
    key = jax.random.key(7)
    loss = jax.jit(lambda k: jnp.mean(works(k, key, 64)))  # common random numbers
    theta = jnp.linspace(0.0, 1.0, 5)
    g = jax.grad(loss)(theta)
    sigma, a = 0.01, 0.15
    beta = a / (sigma * float(jnp.linalg.norm(g)))
    mean = mean_accepted_mutation(loss, theta, jax.random.key(8), sigma, beta, 80000)
    want = -beta * sigma ** 2 / 2 * g
    cos = float(jnp.dot(mean, want) / (jnp.linalg.norm(mean) * jnp.linalg.norm(want)))
    assert cos > 0.98
    ratio = float(jnp.linalg.norm(mean) / jnp.linalg.norm(want))
    assert ratio == pytest.approx(2 * np.exp(a * a / 2) * norm.cdf(-a), rel=0.05)


def test_gradient_descent_needs_fewer_evaluations_than_neuroevolution():
    out = optimal_trap.compare(1.0, 1.0, n_steps=30, trajectories=500, max_evaluations=2000)
    assert out["gradient_evaluations"] is not None
    assert out["neuroevolution_evaluations"] is not None  # both reach the target
    # one gradient costs about three evaluations: still fewer
    assert 3 * out["gradient_evaluations"] < out["neuroevolution_evaluations"]


def test_protocol_with_the_wrong_number_of_coefficients_is_named():
    from chronograd.dynamics.protocols import check_coefficients
    from chronograd.errors import InputError

    assert check_coefficients([0.0, 0.5, 1.0], 3).shape == (3,)
    with pytest.raises(InputError, match="trap protocol: expected 4 coefficients, got shape"):
        check_coefficients([0.0, 0.5, 1.0], 4, "trap protocol")
    with pytest.raises(InputError, match="coefficients must be finite"):
        check_coefficients([0.0, float("nan")], 2)


def test_stiffness_protocol_reaches_its_closed_form():
    """Schmiedl & Seifert's stiffness change k: 1 -> 4 in T = 1: the learned protocol's work
    reaches the optimum, the linear ramp's equals its variance-equation value, and the
    learned knots follow k(t) = 1/s^2 - s'/s with the jumps at both ends."""
    w_star, protocol = optimal_trap.theory_stiffness(1.0, 1.0, 4.0)
    assert w_star == pytest.approx(0.890572, abs=1e-6)
    assert w_star > 0.5 * np.log(4.0)  # dissipation > 0 in finite time
    out = optimal_trap.run_stiffness(1.0, 1.0, 4.0, iterations=100, eval_trajectories=30000)
    se_l, se_r = out["stderr_learned"], out["stderr_linear"]
    # dt = T/100 Euler-Maruyama: allow its O(dt) bias (about +0.003) beside the noise
    assert abs(out["work_linear"] - out["work_linear_theory"]) < 3 * se_r + 0.006
    assert abs(out["work_learned"] - w_star) < 3 * se_l + 0.006
    assert out["work_linear"] - out["work_learned"] > 5 * np.hypot(se_l, se_r)
    np.testing.assert_allclose(out["knots"], out["knots_theory"], atol=0.15)


def test_gradient_descent_and_fire_are_stepping_integrators():
    """Gradient descent: x_n = (1 - eta k)^n x_0 in a harmonic trap, exactly. FIRE as an
    integrator reaches the minimum that the FIRE minimizer reaches, and a protocol that moves
    the trap drags the relaxed particle with it (quasi-static)."""
    import chronograd as cg
    from chronograd.system.terms import HarmonicTrapTerm

    system = cg.System(masses=np.ones(2), terms=(HarmonicTrapTerm("Trap", np.array([0, 1])),),
                       params={"Trap": {"center": np.zeros((2, 3)), "k": np.array([2.0, 5.0])}})
    x0 = np.array([[0.3, -0.2, 0.1], [0.05, 0.4, -0.3]])
    gd = cg.dynamics.gradient_descent(system, step_size=0.1)
    state = gd.init(x0, key=jax.random.key(0))
    step = jax.jit(gd.step)
    for _ in range(7):
        state = step(state, system.params)
    want = x0 * (1 - 0.1 * np.array([2.0, 5.0]))[:, None] ** 7
    np.testing.assert_allclose(state.positions, want, rtol=1e-12)
    fire = cg.dynamics.fire_descent(system, dt_start=0.05, dt_max=0.2, max_step=0.05)
    state = fire.init(x0, key=jax.random.key(0))
    step = jax.jit(fire.step)
    for _ in range(300):
        state = step(state, system.params)
    assert float(state.potential_energy) < 1e-12
    moved = {"Trap": {"center": jnp.full((2, 3), 0.25), "k": jnp.array([2.0, 5.0])}}
    for _ in range(300):
        state = step(state, moved)
    np.testing.assert_allclose(state.positions, 0.25, atol=1e-6)


import poisson_ratio  # noqa: E402


def test_poisson_ratio_command_line_triangular_lattice_is_one_third():
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "designs", "poisson_ratio.py"),
         "--lattice", "triangular", "--json"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["poisson_ratio"] == pytest.approx(1 / 3, rel=1e-10)
    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "designs", "poisson_ratio.py"),
         "--target", "1.5"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--target must lie in (-1, 1)" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow  # default-suite time (CI budget); run by make test-slow
def test_poisson_ratio_gradient_through_the_minimum_equals_finite_differences():
    """d nu / d(log diameters, log binding energies) of a zero-stress packing (particles and
    box relaxed) by implicit differentiation, against central differences that re-minimize
    from the minimum (same basin)."""
    pk = poisson_ratio.Packing(n=32, packings=1)
    ld, z0 = pk.log_design0(), pk.starts_z()[0]
    nu = jax.jit(lambda ld, z0: pk.poisson(ld, z0)[0])
    z = jax.jit(pk.argmin)(pk.params_of(ld), z0)
    grad_z = jax.grad(pk._energy_z)(z, pk.params_of(ld))
    assert float(jnp.sqrt(jnp.mean(grad_z ** 2))) < 1e-8  # stationary: zero force and stress
    assert -1.0 < float(nu(ld, z0)) < 1.0
    g = jax.jit(jax.grad(nu))(ld, z0)
    for k in range(5):
        e = jnp.zeros(5).at[k].set(1e-5)
        fd = (nu(ld + e, z) - nu(ld - e, z)) / 2e-5
        assert float(g[k]) == pytest.approx(float(fd), rel=2e-3, abs=2e-3 * float(
            jnp.max(jnp.abs(g))))


@pytest.mark.slow
def test_poisson_ratio_design_reaches_its_target():
    out = poisson_ratio.design(0.7, iterations=80)
    assert out["initial_poisson_ratio"] == pytest.approx(0.487, abs=0.01)
    assert out["poisson_ratio"] == pytest.approx(0.7, abs=0.015)


import kinetic_pathways  # noqa: E402


def test_mass_action_dimer_equals_its_closed_form_with_gradients():
    from chronograd.dynamics.mass_action import (
        ReactionNetwork,
        concentrations,
        dimer_closed_form,
    )

    net = ReactionNetwork.parse(["A", "B", "AB"], ["A + B <-> AB"])

    def dimer(k_on, k_d):
        return concentrations(net, jnp.array([1.0, 1.0, 0.0]), jnp.array([k_on]),
                              jnp.array([k_d]), 2.0)[2]

    both = jax.jit(jax.value_and_grad(dimer, argnums=(0, 1)))
    closed = jax.value_and_grad(lambda a, b: dimer_closed_form(1.0, a, b, 2.0), argnums=(0, 1))
    for k_on, k_d in ((1.3, 0.1), (0.2, 2.0)):
        (value, g), (want, g_want) = both(k_on, k_d), closed(k_on, k_d)
        assert float(value) == pytest.approx(float(want), rel=1e-8)
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_want), rtol=1e-6)


@pytest.mark.slow  # default-suite time (CI budget); run by make test-slow
def test_trimer_yield_gradient_equals_finite_differences():
    yield_of = jax.jit(kinetic_pathways.make_yield(20.0))
    phi = jnp.array([1.0, -0.5, 2.0, 3.0, 0.0, 1.5])
    g = jax.grad(yield_of)(phi)
    for k in range(6):
        e = jnp.zeros(6).at[k].set(1e-5)
        fd = (yield_of(phi + e) - yield_of(phi - e)) / 2e-5
        assert float(g[k]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9)
    # at the cap, slowing dimerization and speeding completion raise the yield (the trap)
    g_cap = jax.grad(yield_of)(jnp.zeros(6))
    assert np.all(np.asarray(g_cap[:3]) < 0) and np.all(np.asarray(g_cap[3:]) > 0)


@pytest.mark.slow
def test_kinetic_pathway_design_escapes_the_trap():
    """From every rate at the cap (yield 0.744 at t = 20) the design reaches 0.90 with one
    dimer pathway fast and the others slow (hierarchical assembly)."""
    out = kinetic_pathways.run(20.0)
    assert out["yield_uniform"] == pytest.approx(0.7439, abs=1e-3)
    assert out["yield_designed"] > 0.89
    dimer_rates = sorted(out["rates"][:3])
    assert dimer_rates[2] > 0.9 and dimer_rates[0] < 0.05  # one fast, one shut off
    assert min(out["rates"][3:]) > 0.99  # completion at the diffusion limit


def test_mass_action_bad_input_names_the_reaction_or_species():
    from chronograd.dynamics.mass_action import ReactionNetwork, check_rates
    from chronograd.errors import InputError

    with pytest.raises(InputError, match="reaction 1 'B \\+ D <-> BD': unknown species 'D'"):
        ReactionNetwork.parse(["A", "B", "AB"], ["A + B <-> AB", "B + D <-> BD"])
    net = ReactionNetwork.parse(["A", "B", "AB"], ["A + B <-> AB"])
    with pytest.raises(InputError, match="expected 1 values"):
        check_rates(net, [1.0, 2.0], "k_on")
    with pytest.raises(InputError, match="reaction 0 has -1.0"):
        check_rates(net, [-1.0], "k_on")


import equilibrium_propagation as ep_design  # noqa: E402


@pytest.mark.slow  # default-suite time (CI budget); run by make test-slow
def test_equilibrium_propagation_converges_to_the_implicit_gradient():
    """EP's estimate approaches implicit differentiation as beta -> 0: one-sided as O(beta),
    symmetric as O(beta^2) (a 4 x 4 network; the 6 x 5 one in the example)."""
    task = ep_design.SpringTask(nx=4, ny=4)
    k = jnp.ones(len(task.bonds))
    y = jax.jit(lambda kk: ep_design.relax(task.energy, task.y0, task.with_k(kk)))(k)
    exact = task.implicit_gradient(k, task.y0)

    def error(beta, symmetric):
        g = task.ep_gradient(k, y, beta, symmetric=symmetric)
        return float(jnp.linalg.norm(g - exact) / jnp.linalg.norm(exact))

    one = [error(b, False) for b in (1e-2, 1e-3)]
    sym = [error(b, True) for b in (1e-2, 1e-3)]
    assert one[1] < 0.05 and one[0] / one[1] == pytest.approx(10, rel=0.3)  # O(beta)
    assert sym[1] < 1e-3 and sym[0] / sym[1] == pytest.approx(100, rel=0.3)  # O(beta^2)


@pytest.mark.slow
def test_equilibrium_propagation_and_implicit_gradients_both_train_the_network():
    task = ep_design.SpringTask()
    c_imp = ep_design.train(task, "implicit", steps=40)
    c_ep = ep_design.train(task, "ep", steps=40)
    assert c_imp[-1] < 1e-4 * c_imp[0] and c_ep[-1] < 1e-4 * c_ep[0]
    assert c_ep[-1] == pytest.approx(c_imp[-1], rel=0.05)


@pytest.mark.slow  # default-suite time (CI budget); run by make test-slow
def test_protocol_coefficients_through_every_trajectory_estimator():
    """A dragged trap whose centre follows knots carried in params: forward, windowed,
    reverse, checkpointed and finite-difference estimators give the same d<x>/d knots."""
    import chronograd as cg
    from chronograd.dynamics.protocols import scheduled
    from chronograd.gradients.trajectory import trajectory_gradient
    from chronograd.system.terms import HarmonicTrapTerm

    system = cg.System(masses=np.ones(1), terms=(HarmonicTrapTerm("Trap", np.array([0])),),
                       params={"Trap": {"center": np.zeros((1, 3)), "k": np.ones(1)}})
    duration, n_steps = 1.0, 40

    def schedule(p, t):
        lam = piecewise_linear(p["Protocol"]["knots"], t, duration)
        center = jnp.stack([lam, 0.0 * lam, 0.0 * lam])[None, :]
        return {**p, "Trap": dict(p["Trap"], center=center)}

    base = cg.dynamics.langevin(system, timestep=duration / n_steps,
                                temperature=optimal_trap.KT_KELVIN, friction=5.0)
    integ = scheduled(base, schedule)
    params = {**system.params, "Protocol": {"knots": jnp.array([0.0, 0.4, 0.7, 1.0])}}
    state = integ.init(np.zeros((1, 3)), key=jax.random.key(2), params=params)
    wrt = jax.tree_util.tree_map(lambda a: np.zeros(np.shape(a), bool), params)
    wrt["Protocol"]["knots"] = np.ones(4, bool)

    def observable(x, box, p):
        return x[0, 0]

    grads = {a: np.asarray(trajectory_gradient(
        integ, state, n_steps, observable, adjoint=a, params=params, wrt=wrt, every=4,
        window=n_steps if a == "windowed" else None).gradient["Protocol"]["knots"])
        for a in ("forward", "windowed", "reverse", "checkpointed", "finite-difference")}
    for a, g in grads.items():
        np.testing.assert_allclose(g, grads["reverse"], rtol=1e-6, atol=1e-9, err_msg=a)
    assert np.all(grads["reverse"] > 0)  # moving any knot right drags the particle right
