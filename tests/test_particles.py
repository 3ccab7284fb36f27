"""Pair kernels and particle systems (2D and 3D): closed forms, brute-force sums, finite
differences, user kernels, bonded Morse against OpenMM, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import openmm
import pytest

import chronograd as cg
from chronograd.errors import InputError
from chronograd.potentials import kernels as K
from chronograd.potentials.kernels import PairKernel
from chronograd.system.pair_terms import in_trace_spec
from chronograd.system.particles import pair_term

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)

EPS = 1e-5


def test_kernels_equal_their_closed_forms():
    s, e, a, k = 1.3, 0.7, 4.0, 30.0
    assert K.lennard_jones(2 ** (1 / 6) * s, s, e) == pytest.approx(-e, rel=1e-12)
    assert K.lennard_jones(s, s, e) == pytest.approx(0.0, abs=1e-12)
    assert K.wca(2 ** (1 / 6) * s * 0.999999, s, e) == pytest.approx(0.0, abs=1e-5)
    assert K.wca(1.5 * s, s, e) == 0.0
    assert K.wca(s, s, e) == pytest.approx(e, rel=1e-12)
    assert K.morse(s, s, e, a) == pytest.approx(-e, rel=1e-12)
    assert K.morse(s + 0.3, s, e, a) == pytest.approx(
        e * (np.exp(-2 * a * 0.3) - 2 * np.exp(-a * 0.3)), rel=1e-12)
    assert K.soft_sphere(0.5 * s, s, e, 2.5) == pytest.approx(e / 2.5 * 0.5 ** 2.5, rel=1e-12)
    assert K.soft_sphere(1.2 * s, s, e) == 0.0
    assert K.harmonic_morse(0.8 * s, s, e, a, k) == pytest.approx(
        0.5 * k * (0.2 * s) ** 2 - e, rel=1e-12)
    assert K.harmonic_morse(1.2 * s, s, e, a, k) == pytest.approx(K.morse(1.2 * s, s, e, a))
    assert K.gaussian(s, s, e) == pytest.approx(e * np.exp(-0.5), rel=1e-12)
    assert K.yukawa(1 / a, e, a) == pytest.approx(e * a * np.exp(-1.0), rel=1e-12)
    # the piecewise kernels are continuous with a continuous slope at their joins
    for f, r0 in [(lambda r: K.wca(r, s, e), 2 ** (1 / 6) * s),
                  (lambda r: K.soft_sphere(r, s, e, 2.0), s),
                  (lambda r: K.harmonic_morse(r, s, e, a, k), s)]:
        lo, hi = f(r0 - 1e-7), f(r0 + 1e-7)
        assert abs(lo - hi) < 1e-5
        assert abs(jax.grad(f)(r0 - 1e-7) - jax.grad(f)(r0 + 1e-7)) < 1e-4


def brute_force(fn, x, species, box, params, cutoff=None, shift=False):
    """Double loop over pairs in NumPy with the minimum image of an orthorhombic box."""
    total, n = 0.0, len(x)
    for i in range(n):
        for j in range(i + 1, n):
            d = x[i] - x[j]
            if box is not None:
                d = d - np.round(d / np.diag(box)) * np.diag(box)
            r = float(np.linalg.norm(d))
            if cutoff is not None and r >= cutoff:
                continue
            pp = {}
            for name, v in params.items():
                v = np.asarray(v)
                a, b = species[i], species[j]
                pp[name] = (v if v.ndim == 0 else v[a, b] if v.ndim == 2 else
                            0.5 * (v[a] + v[b]) if name == "sigma" else np.sqrt(v[a] * v[b]))
            u = float(fn(r, **pp))
            if shift:
                u -= float(fn(cutoff, **pp))
            total += u
    return total


def packing_2d(n=24, seed=0):
    rng = np.random.default_rng(seed)
    box = np.diag([4.0, 4.0])
    return rng.uniform(0, 4.0, (n, 2)), np.arange(n) % 2, box


HM = {"sigma": np.array([1.0, 1.4]), "epsilon": np.array([[0.1, 0.25], [0.25, 0.4]]),
      "alpha": 5.0, "k": 10.0}


def test_2d_bidisperse_energy_forces_and_parameter_gradients():
    x, sp, box = packing_2d()
    system = cg.particle_system(x, sp, box=box, kernel="harmonic_morse", params=HM, cutoff=1.5,
                                shift=True)
    assert system.dim == 2
    ref = brute_force(K.harmonic_morse, x, sp, box, HM, cutoff=1.5, shift=True)
    e, f = system.energy_and_forces(x)
    assert e == pytest.approx(ref, rel=1e-12)
    assert f.shape == (24, 2)
    U = system.energy_fn()
    xb, bb = jnp.asarray(x), jnp.asarray(box)
    for a, d in [(3, 0), (11, 1)]:
        dx = np.zeros_like(x)
        dx[a, d] = EPS
        fd = (U(xb + dx, bb, system.params) - U(xb - dx, bb, system.params)) / (2 * EPS)
        assert -f[a, d] == pytest.approx(float(fd), rel=1e-6, abs=1e-7)
    g = jax.grad(U, 2)(xb, bb, system.params)["Pairs"]
    assert np.allclose(g["epsilon"], np.asarray(g["epsilon"]).T)  # symmetric table
    for name, idx in [("sigma", (1,)), ("epsilon", (0, 1)), ("alpha", ()), ("k", ())]:
        def at(h, name=name, idx=idx):
            p = {k: np.array(v, float) for k, v in system.params["Pairs"].items()}
            p[name][idx] += h
            if name == "epsilon":
                p[name][idx[::-1]] += h
            return float(U(xb, bb, {"Pairs": p}))
        fd = (at(EPS) - at(-EPS)) / (2 * EPS)
        grad = np.asarray(g[name])
        want = grad[idx] + (grad[idx[::-1]] if name == "epsilon" else 0.0)
        assert float(want) == pytest.approx(fd, rel=1e-6, abs=1e-8), name


def test_hessian_is_symmetric_and_equals_force_differences():
    x, sp, box = packing_2d(10, seed=3)
    system = cg.particle_system(x, sp, box=box, kernel="soft_sphere",
                                params={"sigma": [1.4, 1.8], "epsilon": 1.0, "alpha": 2.0})
    U = system.energy_fn()
    h = np.asarray(cg.hessian_fn(U)(jnp.asarray(x), jnp.asarray(box), system.params))
    h = h.reshape(20, 20)
    assert np.allclose(h, h.T, atol=1e-10)
    grad = jax.grad(U)
    dx = np.zeros_like(x)
    dx[4, 1] = EPS
    col = (np.asarray(grad(jnp.asarray(x + dx), jnp.asarray(box), system.params))
           - np.asarray(grad(jnp.asarray(x - dx), jnp.asarray(box), system.params))) / (2 * EPS)
    assert np.allclose(h[:, 9], col.ravel(), atol=1e-6)


def test_user_kernel_plugs_in_and_gets_gradients():
    kernel = PairKernel("screened", lambda r, a, b: a * jnp.exp(-b * r), ("a", "b"),
                        finite_at_zero=True)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 2.0, (12, 3))
    params = {"a": np.array([2.0, 3.0]), "b": 1.5}
    sp = np.arange(12) % 2
    system = cg.particle_system(x, sp, kernel=kernel, params=params)
    ref = brute_force(lambda r, a, b: a * np.exp(-b * r), x, sp, None, params)
    assert system.energy(x) == pytest.approx(ref, rel=1e-12)
    assert system.term_names() == ("screened",)
    g = jax.grad(system.energy_fn(), 2)(jnp.asarray(x), None, system.params)["Pairs"]["b"]
    fd = (system.energy(x, params={"Pairs": {**params, "b": 1.5 + EPS}})
          - system.energy(x, params={"Pairs": {**params, "b": 1.5 - EPS}})) / (2 * EPS)
    assert float(g) == pytest.approx(fd, rel=1e-7)


def test_in_trace_neighbor_list_equals_explicit_pairs_in_3d():
    rng = np.random.default_rng(2)
    n, side = 400, 7.0
    x = rng.uniform(0, side, (n, 3))
    box = np.eye(3) * side
    params = {"sigma": 0.3, "epsilon": 1.0}
    system = cg.particle_system(x, box=box, kernel="lennard_jones", params=params, cutoff=1.2,
                                shift=True)
    term = system.terms[0]
    listed = pair_term(n, np.zeros(n, np.int32), "lennard_jones", cutoff=1.2, shift=True,
                       box=box, dim=3)
    listed = type(term)(**{**term.__dict__, "pairs": np.zeros((0, 2), np.int32),
                           "neighbors": in_trace_spec(n, 1.2, box)})
    xb, bb = jnp.asarray(x), jnp.asarray(box)
    e1 = term.energy_terms(xb, bb, system.params["Pairs"])["lennard_jones"]
    e2 = listed.energy_terms(xb, bb, system.params["Pairs"])["lennard_jones"]
    assert float(e2) == pytest.approx(float(e1), rel=1e-12)
    assert float(e1) == pytest.approx(
        brute_force(K.lennard_jones, x, np.zeros(n, int), box, params, 1.2, True), rel=1e-10)


def test_morse_bonds_equal_openmm_custom_bond_force(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(0, 0.15, (5, 3))
    bonds = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    bp = {"length": np.array([0.1, 0.12, 0.15, 0.11]), "depth": np.array([300.0, 250, 400, 350]),
          "alpha": np.array([20.0, 18, 25, 22])}
    system = cg.particle_system(x, kernel="gaussian", params={"sigma": 0.1, "epsilon": 0.0},
                                bonds=bonds, bond_params=bp, bond_form="morse", masses=12.0)
    omm = openmm.System()
    for _ in range(5):
        omm.addParticle(12.0)
    force = openmm.CustomBondForce("D*(1-exp(-a*(r-r0)))^2")
    for name in ("r0", "D", "a"):
        force.addPerBondParameter(name)
    for (i, j), r0, d, a in zip(bonds, bp["length"], bp["depth"], bp["alpha"], strict=True):
        force.addBond(int(i), int(j), [r0, d, a])
    omm.addForce(force)
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(x)
    st = ctx.getState(getEnergy=True, getForces=True)
    e, f = system.energy_and_forces(x)
    assert e == pytest.approx(st.getPotentialEnergy()._value, rel=1e-10)
    assert np.allclose(f, np.asarray(st.getForces(asNumpy=True)._value), rtol=1e-8, atol=1e-7)
    bonded = cg.System(masses=system.masses, terms=(system.terms[1],),
                       params={"Bonds": system.params["Bonds"]})
    cg.save(bonded, tmp_path / "morse.json")
    assert cg.load(tmp_path / "morse.json").energy(x) == pytest.approx(e, rel=1e-12)
    exported = openmm.Context(cg.to_openmm(bonded), openmm.VerletIntegrator(0.001),
                              openmm.Platform.getPlatformByName("Reference"))
    exported.setPositions(x)
    assert exported.getState(getEnergy=True).getPotentialEnergy()._value == pytest.approx(
        e, rel=1e-10)
    with pytest.raises(InputError, match="no OpenMM export yet"):
        cg.to_openmm(system)
    with pytest.raises(InputError, match="rebuilt with cg.particle_system"):
        cg.save(system, tmp_path / "pairs.json")


def test_2d_minimization_and_dynamics_run():
    x, sp, box = packing_2d(16, seed=5)
    system = cg.particle_system(x, sp, box=box, kernel="soft_sphere",
                                params={"sigma": [1.2, 1.6], "epsilon": 1.0, "alpha": 2.0})
    res = cg.minimize(system, x, method="fire", tolerance=1e-6, max_iterations=20000)
    assert res.energy < system.energy(x) and res.positions.shape == (16, 2)
    integ = cg.dynamics.langevin(system, timestep=0.005, temperature=10.0, friction=1.0)
    state = integ.init(x, key=jax.random.key(0), temperature=10.0)
    assert integ.dof == 2 * 16  # two coordinates per particle (no COM removal by default)
    for _ in range(5):
        state = integ.step(state, system.params)
    assert state.positions.shape == (16, 2) and np.all(np.isfinite(state.positions))


@pytest.mark.parametrize("kwargs, message", [
    ({"species": np.array([0, 1, 2, 0])}, "species index 2 of particle 2 is out of range"),
    ({"kernel": "buckingham"}, "unknown pair kernel 'buckingham'"),
    ({"params": {"sigma": [1.0, 1.0, 1.0], "epsilon": [1.0, 1.0]}},
     "parameter 'epsilon' has shape"),
    ({"params": {"sigma": 1.0}}, "missing ['epsilon']"),
])
def test_bad_input_is_named(kwargs, message):
    x = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    args = {"species": np.array([0, 1, 1, 0]), "kernel": "lennard_jones",
            "params": {"sigma": [1.0, 1.2], "epsilon": 1.0}, **kwargs}
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cg.particle_system(x, args["species"], kernel=args["kernel"], params=args["params"])


def test_overlapping_particles_are_refused_by_a_kernel_infinite_at_zero():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    kernel = PairKernel("inverse", lambda r, a: a / r, ("a",))
    with pytest.raises(InputError,
                       match="term 'Pairs': particles 1 and 2 overlap .* inverse kernel is not"):
        cg.particle_system(x, kernel=kernel, params={"a": 1.0})
    soft = cg.particle_system(x, kernel="gaussian", params={"sigma": 1.0, "epsilon": 1.0})
    assert soft.energy(x) == pytest.approx(1 + 2 * np.exp(-0.5), rel=1e-12)


def triangular_lattice(nx=6, ny=4, a=1.0):
    """Sites of a triangular lattice in a periodic box, and its nearest-neighbour bonds (the
    design example's builder)."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))), "examples", "designs"))
    from poisson_ratio import triangular_lattice as build

    return build(nx, ny, a)


def test_triangular_spring_lattice_has_poisson_ratio_one_third():
    from chronograd.observables.elastic import elastic_constants, poisson_ratio

    x, box, bonds = triangular_lattice()
    assert len(bonds) == 3 * len(x)
    system = cg.particle_system(x, box=box, kernel="soft_sphere",
                                params={"sigma": 0.5, "epsilon": 0.0, "alpha": 2.0},
                                bonds=bonds, bond_params={"length": 1.0, "k": 1.0})
    U = system.energy_fn()
    xb, bb = jnp.asarray(x), jnp.asarray(box)
    assert float(U(xb, bb, system.params)) == pytest.approx(0.0, abs=1e-20)
    assert float(poisson_ratio(U, xb, bb, system.params)) == pytest.approx(1 / 3, rel=1e-10)
    c = np.asarray(elastic_constants(U, xb, bb, system.params))
    # closed form for springs k at rest length a: C11 = 3 sqrt(3) k / 4 (energy per area)
    assert c[0, 0] == pytest.approx(3 * np.sqrt(3) / 4, rel=1e-10)
    assert c[2, 2] == pytest.approx(c[0, 0] / 3, rel=1e-10)  # shear modulus mu = C11 / 3


def test_a_kernel_wrongly_declared_finite_at_zero_is_named():
    x = np.array([[0.0, 0.0], [1.0, 0.0]])
    liar = PairKernel("liar", lambda r, a: a / r, ("a",), finite_at_zero=True)
    with pytest.raises(InputError, match="the liar kernel gives (nan|inf) at r = 0 for species"
                                         " 0-0 but is declared finite_at_zero"):
        cg.particle_system(x, kernel=liar, params={"a": 1.0})


def test_overlap_across_the_periodic_boundary_is_named():
    x = np.array([[0.0, 1.0], [3.99999, 1.0], [2.0, 2.0]])
    with pytest.raises(InputError, match="particles 0 and 1 overlap"):
        cg.particle_system(x, box=np.diag([4.0, 4.0]), kernel="lennard_jones",
                           params={"sigma": 0.3, "epsilon": 1.0}, cutoff=1.0)
