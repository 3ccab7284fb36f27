"""Every gradient estimator against closed forms: particles in harmonic traps under Langevin
and Brownian dynamics, and a chain of springs at its minimum.

Independent pairs bound by zero-length springs (spring constant k_p per pair): the relative
coordinate of each pair is a 1-D oscillator per component with reduced mass m/2. The
integrators are linear here, so the finite-time moments of the discrete schemes follow exactly
from their 2x2 update matrices (written out below, independently of the library), and the
stationary variance from the discrete Lyapunov equation. The estimators differentiate the
sample average along one noise path; each pair's own k_p drives only that pair, so the
per-pair gradient entries are independent samples and give the statistical error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd.dynamics import BOLTZMANN, brownian, langevin
from chronograd.dynamics.reporters import ReservoirReporter
from chronograd.gradients import (
    GradientError,
    ReweightingError,
    ensemble_gradient,
    gradient,
    implicit_gradient,
    minimized_positions,
    reweight,
    time_vs_ensemble,
    trajectory_gradient,
)
from chronograd.system.terms import HarmonicBondTerm

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)

TEMP, K, MASS = 300.0, 500.0, 12.0
KT = BOLTZMANN * TEMP
MU = MASS / 2


def pairs_system(n_pairs, k=K, seed=0):
    atoms = np.arange(2 * n_pairs).reshape(-1, 2).astype(np.int32)
    params = {"Bonds": {"length": jnp.zeros(n_pairs), "k": jnp.full(n_pairs, k)}}
    system = cg.System(np.full(2 * n_pairs, MASS), (HarmonicBondTerm("Bonds", atoms),), params)
    rng = np.random.default_rng(seed)
    x = np.zeros((2 * n_pairs, 3))
    x[0::2] = rng.uniform(0, 5, (n_pairs, 3))
    x[1::2] = x[0::2] + rng.normal(0, 0.05, (n_pairs, 3))
    return system, x


def mean_sq(x, box=None, params=None):
    """Mean over pairs and components of the squared relative coordinate (nm^2)."""
    r = x[1::2] - x[0::2]
    return jnp.mean(r ** 2)


def k_mask(n_pairs):
    return {"Bonds": {"length": np.zeros(n_pairs, bool), "k": np.ones(n_pairs, bool)}}


def middle_matrices(k, dt, friction):
    """One LangevinMiddle step of the 1-D oscillator: (x, v) -> A (x, v) + B z."""
    a = np.exp(-friction * dt)
    c = np.sqrt((1 - a * a) * KT / MU)
    w = dt * k / MU
    A = np.array([[1 - dt * w / 2 - a * dt * w / 2, dt / 2 * (1 + a)], [-a * w, a]])
    B = np.array([dt / 2 * c, c])
    return A, B


def langevin_time_average(k, x0_sq, dt, friction, n_steps, every):
    """E[mean over frames of x^2] from a fixed start (x0, v=0): mean and covariance
    recursion of the linear scheme. ``x0_sq``: mean of x0^2 over the sample."""
    A, B = middle_matrices(k, dt, friction)
    m = np.array([1.0, 0.0])  # the mean scales with x0: E[x^2] = x0^2 m_x^2 + S_xx
    S = np.zeros((2, 2))
    out = []
    for t in range(1, n_steps + 1):
        m, S = A @ m, A @ S @ A.T + np.outer(B, B)
        if t % every == 0:
            out.append(x0_sq * m[0] ** 2 + S[0, 0])
    return np.mean(out)


def langevin_stationary(k, dt, friction):
    A, B = middle_matrices(k, dt, friction)
    S = np.zeros((2, 2))
    for _ in range(20000):
        S = A @ S @ A.T + np.outer(B, B)
    return S[0, 0]


def brownian_time_average(k, x0_sq, dt, friction, n_steps, every):
    """Euler-Maruyama on the relative coordinate: x' = c x + s z."""
    c = 1 - dt * k / (MU * friction)
    s2 = 2 * KT * dt / (MU * friction)
    n = np.arange(every, n_steps + 1, every)
    return np.mean(c ** (2 * n) * x0_sq + s2 * (1 - c ** (2 * n)) / (1 - c * c))


def d_dk(f, k=K, h=1e-3):
    return (f(k + h) - f(k - h)) / (2 * h)


def total_and_error(result, n_pairs):
    """The gradient with respect to a shared k (sum of per-pair entries) and its standard
    error from the spread of the independent per-pair entries."""
    g = result.flat
    return float(g.sum()), float(np.sqrt(n_pairs) * g.std(ddof=1))


@pytest.fixture(scope="module")
def langevin_setup():
    n_pairs = 256
    system, x = pairs_system(n_pairs)
    integ = langevin(system, timestep=0.004, temperature=TEMP, friction=20.0)
    state = integ.init(x, key=jax.random.key(1))
    x0_sq = float(np.mean((x[1::2] - x[0::2]) ** 2))
    exact = d_dk(lambda k: langevin_time_average(k, x0_sq, 0.004, 20.0, 200, 5))
    return system, integ, state, n_pairs, exact


@pytest.mark.parametrize("adjoint", ["forward", pytest.param("windowed", marks=pytest.mark.slow),
                                     "reverse", "checkpointed"])
def test_trajectory_estimators_match_finite_time_formula_langevin(langevin_setup, adjoint):
    system, integ, state, n_pairs, exact = langevin_setup
    r = gradient(mean_sq, adjoint=adjoint, integrator=integ, state=state, n_steps=200,
                 every=5, wrt=k_mask(n_pairs), window=100)
    g, err = total_and_error(r, n_pairs)
    assert abs(g - exact) < 3 * err, (g, exact, err)
    assert err < 0.2 * abs(exact)  # the test has power
    assert r.verdict.startswith("trustworthy")  # a harmonic trap is not chaotic


def test_trajectory_estimators_agree_path_by_path(langevin_setup):
    """Same noise path: forward = reverse = checkpointed to rounding; windowed converges."""
    system, integ, state, n_pairs, _ = langevin_setup
    kw = dict(every=5, wrt=k_mask(n_pairs), diagnostics=False)
    fwd = trajectory_gradient(integ, state, 200, mean_sq, adjoint="forward", **kw).flat
    rev = trajectory_gradient(integ, state, 200, mean_sq, adjoint="reverse", **kw).flat
    chk = trajectory_gradient(integ, state, 200, mean_sq, adjoint="checkpointed", segment=7,
                              **kw).flat
    scale = np.abs(fwd).max()
    assert np.abs(rev - fwd).max() < 1e-10 * scale
    assert np.abs(chk - fwd).max() < 1e-10 * scale
    errors = [np.abs(trajectory_gradient(integ, state, 200, mean_sq, adjoint="windowed",
                                         window=w, **kw).flat - fwd).max() / scale
              for w in (10, 30, 60)]
    a = integ.decay
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 10 * a ** 60 and errors[1] < 10 * a ** 30


def test_brownian_forward_and_reverse_match_formula():
    n_pairs = 256
    system, x = pairs_system(n_pairs, seed=2)
    integ = brownian(system, timestep=0.001, temperature=TEMP, friction=50.0)
    state = integ.init(x, key=jax.random.key(2))
    x0_sq = float(np.mean((x[1::2] - x[0::2]) ** 2))
    exact = d_dk(lambda k: brownian_time_average(k, x0_sq, 0.001, 50.0, 100, 4))
    for adjoint in ("forward", "reverse"):
        r = trajectory_gradient(integ, state, 100, mean_sq, adjoint=adjoint, every=4,
                                wrt=k_mask(n_pairs), diagnostics=False)
        g, err = total_and_error(r, n_pairs)
        assert abs(g - exact) < 3 * err and err < 0.2 * abs(exact), (adjoint, g, exact, err)


@pytest.fixture(scope="module")
def stationary_frames():
    """Decorrelated equilibrium frames of 64 pairs at k (LangevinMiddle samples x exactly
    from exp(-U/kT) for a harmonic oscillator)."""
    n_pairs = 64
    system, x = pairs_system(n_pairs, seed=3)
    integ = langevin(system, timestep=0.004, temperature=TEMP, friction=20.0)
    state = cg.simulate(integ, integ.init(x, key=jax.random.key(4), temperature=TEMP), 500)
    rep = ReservoirReporter(600, every=20)
    cg.simulate(integ, state, 12000, reporters=[rep])
    order = np.argsort(rep.steps)
    return system, integ, np.stack(rep.frames)[order], n_pairs


def test_ensemble_gradient_matches_stationary_formula(stationary_frames):
    system, integ, frames, n_pairs = stationary_frames
    assert langevin_stationary(K, 0.004, 20.0) == pytest.approx(KT / K, rel=1e-9)
    exact = d_dk(lambda k: langevin_stationary(k, 0.004, 20.0))  # = -kT/k^2
    assert exact == pytest.approx(-KT / K ** 2, rel=1e-6)
    r = ensemble_gradient(system, frames, mean_sq, temperature=TEMP, wrt=k_mask(n_pairs))
    g = float(r.flat.sum())
    err = float(np.sqrt(np.sum(r.std_error ** 2)))  # per-pair entries are independent
    assert abs(g - exact) < 3 * err and err < 0.15 * abs(exact), (g, exact, err)
    assert r.diagnostics["n_effective"] > 100
    # the observable's own theta dependence: <U> = 3/2 N kT, so d<U>/dk = 0 for every k_p
    u = ensemble_gradient(system, frames, cg.observables.potential_energy(system),
                          temperature=TEMP, wrt=k_mask(n_pairs))
    assert abs(u.flat.sum()) < 3 * np.sqrt(np.sum(u.std_error ** 2))


def test_reweighting_exp_and_mbar_match_formula(stationary_frames):
    system, integ, frames, n_pairs = stationary_frames
    new = {"Bonds": {"length": jnp.zeros(n_pairs), "k": jnp.full(n_pairs, 1.03 * K)}}
    r = reweight(system, frames, mean_sq, new, temperature=TEMP, method="exp")
    assert abs(r["value"] - KT / (1.03 * K)) < 3 * r["std_error"]
    assert r["std_error"] < 0.02 * KT / K and r["ess"] > 50
    # MBAR from frames at k and at 1.06 k, evaluated at 1.03 k
    hi = {"Bonds": {"length": jnp.zeros(n_pairs), "k": jnp.full(n_pairs, 1.06 * K)}}
    integ_hi = langevin(system.with_params(hi), timestep=0.004, temperature=TEMP,
                        friction=20.0)
    s = integ_hi.init(frames[-1], key=jax.random.key(5), temperature=TEMP)
    rep = ReservoirReporter(300, every=20)
    cg.simulate(integ_hi, s, 6000, reporters=[rep])
    both = np.concatenate([frames, np.stack(rep.frames)])
    m = reweight(system, both, mean_sq, new, temperature=TEMP, method="mbar",
                 states=[(system.params, len(frames)), (hi, len(rep.frames))])
    assert abs(m["value"] - KT / (1.03 * K)) < 3 * m["std_error"]
    assert m["ess"] > r["ess"]  # a second state adds overlap
    far = {"Bonds": {"length": jnp.zeros(n_pairs), "k": jnp.full(n_pairs, 3.0 * K)}}
    with pytest.raises(ReweightingError, match="effective samples.*Re-simulate"):
        reweight(system, frames, mean_sq, far, temperature=TEMP)


def test_time_average_matches_replica_ensemble(stationary_frames):
    system, integ, frames, n_pairs = stationary_frames
    finals = []
    for seed in range(8):
        s = integ.init(frames[0], key=jax.random.key(100 + seed), temperature=TEMP)
        finals.append(np.asarray(cg.simulate(integ, s, 400).positions))
    out = time_vs_ensemble(mean_sq, frames, finals)
    assert abs(out["z"]) < 3 and out["verdict"].startswith("consistent")
    assert out["ensemble_mean"] == pytest.approx(KT / K, rel=0.1)


def test_implicit_gradient_of_spring_chain_matches_closed_form():
    """Springs A-B (k1, r1), B-C (k2, r2), A-C (k3, r3 > r1 + r2) hold a straight chain with
    |AC| = s = (r1 + r2 + k3 c r3) / (1 + k3 c), c = 1/k1 + 1/k2."""
    k1, k2, k3, r1, r2, r3 = 3e4, 5e4, 1e4, 0.10, 0.15, 0.40
    params = {"Bonds": {"length": jnp.array([r1, r2, r3]), "k": jnp.array([k1, k2, k3])}}
    system = cg.System(np.full(3, 12.0), (HarmonicBondTerm("Bonds", np.array(
        [[0, 1], [1, 2], [0, 2]], np.int32)),), params)
    x0 = np.array([[0.0, 0.0, 0.0], [0.11, 0.01, 0.0], [0.3, -0.01, 0.02]])
    r = implicit_gradient(system, x0, cg.observables.distance(0, 2), tolerance=1e-7)
    c = 1 / k1 + 1 / k2
    s = (r1 + r2 + k3 * c * r3) / (1 + k3 * c)
    assert r.value == pytest.approx(s, rel=1e-9)
    g = r.gradient["Bonds"]
    assert float(g["k"][2]) == pytest.approx(c * (r3 - r1 - r2) / (1 + k3 * c) ** 2, rel=1e-6)
    assert float(g["length"][2]) == pytest.approx(k3 * c / (1 + k3 * c), rel=1e-6)
    assert float(g["length"][0]) == pytest.approx(1 / (1 + k3 * c), rel=1e-6)
    ds_dk1 = -k3 * (r3 - s) / (k1 ** 2 * (1 + k3 * c))  # ds/dc dc/dk1, dc/dk1 = -1/k1^2
    assert float(g["k"][0]) == pytest.approx(ds_dk1, rel=1e-6)
    assert r.verdict.startswith("trustworthy")
    # the custom VJP of x_star(params) gives the same, composed with any loss by jax.grad
    x_star = minimized_positions(system, x0, tolerance=1e-7)
    g2 = jax.grad(lambda p: cg.observables.distance(0, 2)(x_star(p), None, p))(params)
    assert np.allclose(g2["Bonds"]["k"], g["k"], rtol=1e-6, atol=0)
    assert np.allclose(g2["Bonds"]["length"], g["length"], rtol=1e-6, atol=0)


def test_memory_limit_and_non_finite_gradients_give_clear_errors():
    """(Cheap to compile here; the Sage file checks the other bad inputs.)"""
    system, x = pairs_system(8)
    integ = langevin(system, timestep=0.004, temperature=TEMP, friction=20.0)
    state = integ.init(x, key=jax.random.key(0))
    with pytest.raises(GradientError, match="memory limit.*checkpointed"):
        trajectory_gradient(integ, state, 200, mean_sq, adjoint="reverse",
                            memory_limit_gb=1e-5)
    with pytest.raises(GradientError, match="not finite"):
        trajectory_gradient(integ, state, 4, lambda x, b, p: jnp.log(x[0, 0] - 1e3),
                            adjoint="forward")
