"""Compile once: simulate in large chunks whatever n_steps is, alternating integrators without
recompiling, and QM targets over many molecules as one batched program with the same rows."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd.dynamics import langevin, velocity_verlet
from chronograd.dynamics.runner import simulate
from chronograd.fit import EnergyForceTarget, TorsionProfileTarget, load_qm_dataset
from chronograd.system.terms import HarmonicBondTerm

QM = Path(__file__).resolve().parent.parent / "data" / "qm"


class _Compiles:
    """Counts XLA compilations (jax.monitoring) while active. The event is recorded for
    programs served from the persistent compilation cache the suite uses (conftest.py) too,
    so a program built again counts even when XLA does not recompile it."""

    def __init__(self):
        self.n = 0
        self.on = False
        jax.monitoring.register_event_duration_secs_listener(self._event)

    def _event(self, event, duration, **kwargs):
        if self.on and event == "/jax/core/compile/backend_compile_duration":
            self.n += 1

    def __enter__(self):
        self.n, self.on = 0, True
        return self

    def __exit__(self, *exc):
        self.on = False


COMPILES = _Compiles()


def _springs(n_pairs=16):
    atoms = np.arange(2 * n_pairs).reshape(-1, 2).astype(np.int32)
    params = {"Bonds": {"length": jnp.full(n_pairs, 0.1), "k": jnp.full(n_pairs, 1000.0)}}
    system = cg.System(np.full(2 * n_pairs, 12.0), (HarmonicBondTerm("Bonds", atoms),), params)
    x = np.random.default_rng(1).normal(size=(2 * n_pairs, 3)) * 0.05
    x += np.repeat(np.arange(n_pairs), 2)[:, None]
    return system, x


def test_simulate_runs_a_remainder_chunk_and_matches_step_by_step():
    system, x = _springs()
    integ = velocity_verlet(system, timestep=0.001)
    s0 = integ.init(x, key=jax.random.key(0), temperature=300.0)
    with COMPILES as c:
        s = simulate(integ, s0, 137)  # 100 + a remainder of 37: two compiled lengths
    assert int(s.step) == 137 and c.n <= 3
    one = s0
    for _ in range(137):
        one = integ.step(one, system.params)
    assert np.abs(np.asarray(s.positions) - np.asarray(one.positions)).max() < 1e-11


def test_alternating_integrators_do_not_recompile():
    system, x = _springs()
    a = langevin(system, timestep=0.001, temperature=300.0)
    b = velocity_verlet(system, timestep=0.001)
    sa = a.init(x, key=jax.random.key(0), temperature=300.0)
    sb = b.init(x, key=jax.random.key(1), temperature=300.0)
    for _ in range(2):  # first round compiles both
        sa, sb = simulate(a, sa, 50), simulate(b, sb, 50)
    with COMPILES as c:
        for _ in range(3):
            sa, sb = simulate(a, sa, 50), simulate(b, sb, 50)
    assert c.n == 0


@pytest.mark.parametrize("target_class, kinds", [(EnergyForceTarget, "conformers"),
                                                  (TorsionProfileTarget, "torsion_scan")])
def test_batched_qm_target_rows_equal_per_molecule_rows(target_class, kinds):
    """Several molecules: the batched residuals equal the per-molecule program's, row by row."""
    from chronograd.fit.data import list_records

    ff = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    ids = [r for r, kind in list_records(QM).items() if kind == kinds][:3]
    records = load_qm_dataset(QM, records=ids)
    target = target_class(ff, records, charges="gasteiger", force_weight=0.5)
    assert target._fit is not None and len(target.records) == len(ids) >= 2
    theta = ff.params
    batched = np.asarray(target.residuals(theta))
    target._fit = None  # the per-molecule path
    per_molecule = np.asarray(jax.jit(target._residuals)(theta))
    assert batched.shape == per_molecule.shape
    assert np.abs(batched - per_molecule).max() <= 1e-12 * np.abs(per_molecule).max()


def test_repeated_estimator_calls_do_not_recompile():
    """ensemble_gradient, reweight and implicit_gradient called again (new frames, a new start,
    a new parameter selection of the same size) reuse their compiled programs."""
    from chronograd.gradients import ensemble_gradient, implicit_gradient, reweight

    system, x = _springs(4)
    observable = cg.observables.distance(0, 1)
    rng = np.random.default_rng(2)
    frames = [x + 0.01 * rng.normal(size=(4,) + x.shape) for _ in range(3)]
    params_new = jax.tree_util.tree_map(lambda a: a * 1.001, system.params)

    def calls(k):
        ensemble_gradient(system, frames[k], observable, temperature=300.0)
        reweight(system, frames[k], observable, params_new, temperature=300.0, min_ess=1.0)
        r = implicit_gradient(system, frames[k][0], observable, tolerance=1e-6)
        assert r.verdict.startswith("trustworthy")

    calls(0)  # compiles each program once
    with COMPILES as c:
        calls(1)
        calls(2)
    assert c.n == 0


@pytest.mark.parametrize("adjoint", ["forward", "reverse", "finite-difference"])
def test_repeated_trajectory_gradients_do_not_recompile(adjoint):
    """trajectory_gradient called again with a new start, new parameter values and another
    selection of the same size reuses its compiled plan, and gives the new run's gradient."""
    from chronograd.gradients import trajectory_gradient

    system, x = _springs(4)
    integ = langevin(system, timestep=0.002, temperature=300.0, friction=10.0)
    observable = cg.observables.distance(0, 1)

    def call(seed, scale, wrt):
        state = integ.init(x + 0.01 * seed, key=jax.random.key(seed), temperature=300.0)
        params = jax.tree_util.tree_map(lambda a: a * scale, system.params)
        return trajectory_gradient(integ, state, 20, observable, adjoint=adjoint, every=5,
                                   params=params, wrt=wrt, diagnostics=True)

    first = call(0, 1.0, [4, 5])  # compiles each program once
    with COMPILES as c:
        again = call(1, 1.01, [4, 6])
    assert c.n == 0
    assert np.all(np.isfinite(again.flat)) and not np.allclose(again.flat, first.flat)
    # the reused plan computes the same gradient as a fresh one would (the reference: reverse
    # mode of the same run, compiled separately)
    if adjoint != "reverse":
        state = integ.init(x + 0.01, key=jax.random.key(1), temperature=300.0)
        params = jax.tree_util.tree_map(lambda a: a * 1.01, system.params)
        ref = trajectory_gradient(integ, state, 20, observable, adjoint="reverse", every=5,
                                  params=params, wrt=[4, 6], diagnostics=False)
        tol = 1e-6 if adjoint == "forward" else 1e-4
        assert np.allclose(again.flat, ref.flat, rtol=tol, atol=1e-9)
