"""Gradient estimators on a small molecule with Sage parameters: forward = reverse =
checkpointed = central finite differences on short horizons (common random numbers), the
windowed forward mode converging to the full one, implicit gradients through minimization
equal to an unrolled minimizer and to finite differences, and the errors bad input gets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd import observables as obs
from chronograd.dynamics import langevin, velocity_verlet
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.gradients import (
    ensemble_gradient,
    flat_params,
    gradient,
    implicit_gradient,
    rigid_modes,
    trajectory_gradient,
)


@pytest.fixture(scope="module")
def glycol():
    ff = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    mol = cg.Molecule.from_smiles("OCCO")
    mol.partial_charges = gasteiger_charges(mol)
    system = ff.create_system(mol, charges="from-file")
    used = {pid for (_, pid) in ff.instances(system)}
    return ff, mol, system, ff.select(ids=used)


def relative_max_error(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def _sage_trajectory_results(glycol, estimators):
    ff, mol, system, wrt = glycol
    integ = langevin(system, timestep=0.001, temperature=300.0, friction=5.0, scheme="baoab")
    state = integ.init(mol.positions, key=jax.random.key(0), temperature=300.0)
    U = obs.potential_energy(system)
    rg = obs.radius_of_gyration(system.masses)

    def observable(x, box, params):  # depends on theta directly and through the path
        return U(x, box, params) + 1e3 * rg(x, box)

    kw = dict(every=2, wrt=wrt)
    return {a: trajectory_gradient(integ, state, 30, observable, adjoint=a, **kw)
            for a in estimators}


def _check_agreement(res):
    ref = res["forward"].flat
    assert ref.size > 30 and np.abs(ref).max() > 0
    for a in res:
        assert relative_max_error(res[a].flat, ref) < 1e-6, a
        assert res[a].value == pytest.approx(res["forward"].value, rel=1e-12)
    assert res["forward"].verdict.startswith("trustworthy")
    assert res["forward"].diagnostics["tangent_norm"].shape == (30,)


@pytest.mark.slow
def test_forward_mode_equals_finite_differences_on_sage_molecule(glycol):
    _check_agreement(_sage_trajectory_results(glycol, ("forward", "finite-difference")))


@pytest.mark.slow
def test_forward_reverse_checkpointed_fd_agree_on_sage_molecule(glycol):
    """All four on the same path (reverse and checkpointed compile slowly with the full Sage
    energy; the harmonic-trap tests cross-check them in the default suite)."""
    _check_agreement(_sage_trajectory_results(
        glycol, ("forward", "reverse", "checkpointed", "finite-difference")))


@pytest.mark.slow
def test_windowed_forward_mode_converges_to_full(glycol):
    """(The harmonic-trap tests check the same convergence in the default suite.)"""
    ff, mol, system, wrt = glycol
    integ = langevin(system, timestep=0.001, temperature=300.0, friction=100.0,
                     scheme="middle")
    state = integ.init(mol.positions, key=jax.random.key(1), temperature=300.0)
    dihedral = obs.dihedral(0, 1, 2, 3)
    kw = dict(every=4, wrt=wrt, diagnostics=False)
    full = trajectory_gradient(integ, state, 60, dihedral, adjoint="forward", **kw).flat
    errors = [relative_max_error(trajectory_gradient(integ, state, 60, dihedral,
                                                     adjoint="windowed", window=k, **kw).flat,
                                 full) for k in (5, 15, 30, 60)]
    assert errors[0] > errors[1] > errors[2] and errors[3] < 1e-12, errors
    assert errors[2] < 0.05


def newton_unrolled(system, x_start, params, iterations=10):
    """Newton's method with the dense Hessian (rigid modes shifted out), unrolled in lax.scan
    so that reverse mode differentiates through every iteration."""
    U = system.energy_fn()
    grad = jax.grad(U, argnums=0)
    hess = jax.hessian(U, argnums=0)
    n = x_start.shape[0]

    def body(x, _):
        # the shift only removes the null space; its own derivative vanishes at convergence
        modes = jax.lax.stop_gradient(rigid_modes(x, periodic=False)).reshape(6, -1)
        h = hess(x, None, params).reshape(3 * n, 3 * n) + modes.T @ modes
        return x - jnp.linalg.solve(h, grad(x, None, params).ravel()).reshape(n, 3), None

    return jax.lax.scan(body, x_start, None, length=iterations)[0]


@pytest.mark.slow
def test_implicit_gradient_equals_unrolled_minimizer_and_finite_differences(glycol):
    """(Slow: ~50 s of compilation; the spring-chain closed form checks the implicit
    gradient in the default suite.)"""
    ff, mol, system, wrt = glycol
    observable = obs.distance(0, 3)  # O...O distance at the minimum
    r = implicit_gradient(system, mol.positions, observable, wrt=wrt, tolerance=1e-8)
    assert r.verdict.startswith("trustworthy")
    fp = flat_params(ff.params, wrt)
    x_start = jnp.asarray(cg.minimize(system, mol.positions, tolerance=1.0).positions)

    def unrolled(phi):
        return observable(newton_unrolled(system, x_start, fp.params(phi)), None, None)

    g_unrolled = np.asarray(jax.jit(jax.grad(unrolled))(fp.phi0))
    assert float(unrolled(fp.phi0)) == pytest.approx(r.value, abs=1e-9)
    assert relative_max_error(r.flat, g_unrolled) < 1e-6
    minimum = jax.jit(lambda p: observable(
        cg.gradients.minimized_positions(system, mol.positions, tolerance=1e-8).minimize(p),
        None, None))
    for k in np.argsort(-np.abs(r.flat))[:3]:
        h = 1e-5 * max(1.0, abs(float(fp.phi0[k])))
        fd = (float(minimum(fp.params(fp.phi0.at[k].add(h))))
              - float(minimum(fp.params(fp.phi0.at[k].add(-h))))) / (2 * h)
        assert r.flat[k] == pytest.approx(fd, rel=1e-5)


def test_bad_input_gives_clear_errors(glycol, tmp_path):
    ff, mol, system, wrt = glycol
    integ = langevin(system, timestep=0.001, temperature=300.0)
    state = integ.init(mol.positions, key=jax.random.key(0), temperature=300.0)
    U = obs.potential_energy(system)
    with pytest.raises(cg.InputError, match="needs integrator=, state=, n_steps="):
        gradient(U, adjoint="reverse", system=system)
    with pytest.raises(cg.InputError, match="adjoint must be one of"):
        gradient(U, adjoint="backprop", integrator=integ, state=state, n_steps=10)
    with pytest.raises(cg.InputError, match="needs a Langevin integrator"):
        trajectory_gradient(velocity_verlet(system, timestep=0.001), state, 10, U,
                            adjoint="windowed", window=5)
    with pytest.raises(cg.InputError, match="scalar observable"):
        trajectory_gradient(integ, state, 10, obs.distances([[0, 1], [2, 3]]))
    frames = np.stack([mol.positions] * 4)
    with pytest.raises(cg.InputError, match="non-finite value"):
        ensemble_gradient(system, frames, lambda x, b, p: jnp.sqrt(-1.0 - x[0, 0] ** 2),
                          temperature=300.0, wrt=wrt)
    with pytest.raises(cg.InputError, match="wrt selects no parameters"):
        trajectory_gradient(integ, state, 4, U, wrt=ff.select(ids=["nonexistent"]))
