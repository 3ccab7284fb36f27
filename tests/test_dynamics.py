"""Dynamics engine: constraints, Brownian and Langevin statistics in a harmonic trap,
gradients through a trajectory, exact restart, blow-up detection, reporters."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd.dynamics import BOLTZMANN, brownian, langevin, nose_hoover, velocity_verlet
from chronograd.dynamics.constraints import (
    build_constraints,
    constraint_error,
    iterative,
    rattle_velocities,
    shake,
)
from chronograd.dynamics.reporters import (
    CheckpointReporter,
    DCDReporter,
    ReservoirReporter,
    StateDataReporter,
    XTCReporter,
    load_checkpoint,
)
from chronograd.dynamics.runner import SimulationError, simulate
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.system.terms import HarmonicBondTerm

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)


def harmonic_pairs(n_pairs=256, k=500.0, mass=12.0):
    """Independent pairs bound by zero-length springs: the relative coordinate of each is a
    3-D harmonic oscillator with <x^2> = kT / k per component (reduced mass irrelevant)."""
    atoms = np.arange(2 * n_pairs).reshape(-1, 2).astype(np.int32)
    term = HarmonicBondTerm("Bonds", atoms)
    params = {"Bonds": {"length": jnp.zeros(n_pairs), "k": jnp.full(n_pairs, k)}}
    system = cg.System(np.full(2 * n_pairs, mass), (term,), params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * n_pairs, 3)) * 0.05 + np.repeat(np.arange(n_pairs), 2)[:, None]
    return system, x


def relative_variance(traj):
    rel = traj[:, 0::2] - traj[:, 1::2]
    return float(np.mean(rel ** 2))


def test_brownian_harmonic_trap_variance():
    k, temp = 500.0, 300.0
    system, x = harmonic_pairs(k=k)
    integ = brownian(system, timestep=0.0005, temperature=temp, friction=50.0)
    state = integ.init(x, key=jax.random.key(0))
    state = simulate(integ, state, 2000)  # equilibrate: relaxation time m gamma / (2k) ~ 0.6 ps
    frames = ReservoirReporter(400, every=20, seed=1)
    simulate(integ, state, 8000, reporters=[frames])
    var = relative_variance(np.stack(frames.frames))
    # Brownian steps have O(dt) bias: dt k / (m gamma) = 4e-4 here
    assert var == pytest.approx(BOLTZMANN * temp / k * 2 / 2, rel=0.03)


@pytest.mark.parametrize("scheme", ["middle", "baoab"])
def test_langevin_harmonic_trap_temperature_and_variance(scheme):
    k, temp = 500.0, 300.0
    system, x = harmonic_pairs(k=k)
    integ = langevin(system, timestep=0.004, temperature=temp, friction=5.0, scheme=scheme)
    state = simulate(integ, integ.init(x, key=jax.random.key(3), temperature=temp), 1000)
    rep = ReservoirReporter(10_000, every=10)
    temps = []

    class Temps:
        every = 10

        def report(self, s, info):
            temps.append(float(cg.dynamics.temperature(s.velocities, system.masses,
                                                       integ.dof)))

    simulate(integ, state, 6000, reporters=[rep, Temps()])
    assert relative_variance(np.stack(rep.frames)) == pytest.approx(BOLTZMANN * temp / k,
                                                                    rel=0.03)
    # BAOAB's on-step velocities run cold by w^2 dt^2 / 4 per harmonic mode: 3e-4 for these
    # relative coordinates (w^2 = k / (m/2)), half of the degrees of freedom; the free centres
    # of mass are exact. The water-box check of both schemes is in test_dynamics_ensembles.py
    if scheme == "baoab":
        assert np.mean(temps) == pytest.approx(temp, rel=0.01)


def test_nose_hoover_conserves_its_extended_energy():
    system, x = harmonic_pairs(n_pairs=64)
    integ = nose_hoover(system, timestep=0.002, temperature=300.0, tau=0.1)
    s = integ.init(x, key=jax.random.key(0), temperature=300.0)
    h0 = float(cg.dynamics.nose_hoover_conserved_energy(s, system.masses, integ.dof, 300.0,
                                                        0.1))
    s = simulate(integ, s, 2000)
    h1 = float(cg.dynamics.nose_hoover_conserved_energy(s, system.masses, integ.dof, 300.0,
                                                        0.1))
    assert abs(h1 - h0) < 1e-3 * integ.dof * BOLTZMANN * 300.0


@pytest.fixture(scope="module")
def small_water_box():
    from chronograd.minimize import minimize
    from chronograd.topology.boxes import water_box

    mols, pos, box = water_box(1.9)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    result = minimize(system, pos, box, tolerance=50.0)
    assert result.status == "converged"
    return system, result.positions, box


def test_constraints_hold_to_machine_precision():
    mol = cg.Molecule.from_smiles("CC(=O)Nc1ccccc1")
    mol.partial_charges = gasteiger_charges(mol)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mol, charges="from-file")
    con = build_constraints(system.constraints, system.constraint_distances, system.masses)
    assert con.n == 9  # bonds to hydrogen
    rng = np.random.default_rng(0)
    x0 = jnp.asarray(mol.positions)
    x1 = shake(x0 + 0.003 * rng.normal(size=x0.shape), x0, con)
    assert float(constraint_error(x1, con)) < 1e-12
    v = rattle_velocities(jnp.asarray(rng.normal(size=x0.shape)), x1, con)
    r = x1[con.pairs[:, 0]] - x1[con.pairs[:, 1]]
    vrel = v[con.pairs[:, 0]] - v[con.pairs[:, 1]]
    assert float(jnp.max(jnp.abs(jnp.sum(r * vrel, -1)))) < 1e-12
    # an NVE run keeps them
    integ = velocity_verlet(system, timestep=0.002)
    s = simulate(integ, integ.init(mol.positions, key=jax.random.key(0), temperature=300.0),
                 200)
    assert float(constraint_error(s.positions, con)) < 1e-10


def test_settle_is_shake_in_closed_form(small_water_box, caplog):
    """Rigid waters take SETTLE: the same positions as M-SHAKE's Newton iterations, and the
    same first derivatives (reverse and forward mode), to machine precision. A rigid triangle
    with unequal masses keeps M-SHAKE and says why."""
    system, x, box = small_water_box
    masses = np.asarray(system.masses)
    con = build_constraints(system.constraints, system.constraint_distances, masses)
    assert con.settle is not None and len(con.settle.atoms) == len(masses) // 3
    assert con.shake_clusters.size == 0
    b = jnp.asarray(box)
    x0 = jnp.asarray(x)
    rng = np.random.default_rng(1)
    x1 = x0 + 0.003 * rng.normal(size=x0.shape)
    fast, newton = jax.jit(shake)(x1, x0, con, b), jax.jit(shake)(x1, x0, iterative(con), b)
    assert float(jnp.max(jnp.abs(fast - newton))) < 1e-13
    assert float(constraint_error(fast, con, b)) < 1e-13
    w = jnp.asarray(rng.normal(size=x0.shape))

    def along(c):
        return lambda y: jnp.sum(w * shake(y, x0, c, b))

    np.testing.assert_allclose(jax.grad(along(con))(x1), jax.grad(along(iterative(con)))(x1),
                               atol=1e-12)
    t_fast = jax.jvp(lambda y: shake(y, x0, con, b), (x1,), (w,))[1]
    t_newton = jax.jvp(lambda y: shake(y, x0, iterative(con), b), (x1,), (w,))[1]
    np.testing.assert_allclose(t_fast, t_newton, atol=1e-12)
    heavy = masses.copy()
    heavy[2] = 2.014  # one deuterium: SETTLE's equal-mass frame does not apply
    with caplog.at_level("INFO", logger="chronograd.dynamics"):
        mixed = build_constraints(system.constraints, system.constraint_distances, heavy)
    assert mixed.shake_clusters.size == 1 and "masses of atoms 1 and 2 differ" in caplog.text
    moved = jax.jit(shake)(x1, x0, mixed, b)
    assert float(constraint_error(moved, mixed, b)) < 1e-12


def test_mixed_precision_forces(small_water_box):
    """precision="mixed": U and F in float32, the state in float64. Against float64: the
    energy to 1e-5 relative, forces to 0.05 kJ/mol/nm (of ~600 rms)."""
    from chronograd.system.forces import force_fn

    system, x, box = small_water_box
    b, xj = jnp.asarray(box), jnp.asarray(x)
    fns = system.neighbor_list(skin=0.1)
    nbrs = fns.allocate(xj, b)
    ref = jax.jit(force_fn(system, fns))(xj, b, system.params, nbrs)
    low = jax.jit(force_fn(system, fns, precision="mixed"))(xj, b, system.params, nbrs)
    assert low[3].dtype == jnp.float64 and low[2].dtype == jnp.float64
    assert abs(float(low[2] - ref[2])) < 1e-5 * abs(float(ref[2]))
    assert float(jnp.max(jnp.abs(low[3] - ref[3]))) < 0.05
    with pytest.raises(cg.InputError, match="precision must be one of"):
        velocity_verlet(system, timestep=0.001, precision="half")


@pytest.mark.slow  # three MD programs to compile: ~100 s
def test_mixed_precision_conserves_energy_like_double(small_water_box):
    """An NVE run with float32 forces: its total energy fluctuates no more than 1.5x the
    float64 run's from the same start (2 ps at 1 fs)."""
    system, x, box = small_water_box
    masses = np.asarray(system.masses)
    lg = langevin(system, timestep=0.002, temperature=300.0, friction=5.0)
    start = simulate(lg, lg.init(x, key=jax.random.key(0), temperature=300.0), 500)
    spread = {}
    for precision in ("double", "mixed"):
        nve = velocity_verlet(system, timestep=0.001, precision=precision)
        s = nve.init(start.positions, key=jax.random.key(1), velocities=start.velocities)

        class Total:
            every = 10
            values: list = []

            def report(self, st, info):
                self.values.append(float(st.potential_energy) + 0.5 * float(
                    np.sum(masses[:, None] * np.asarray(st.velocities) ** 2)))

        total = Total()
        total.values = []
        end = simulate(nve, s, 2000, reporters=[total])
        assert end.positions.dtype == jnp.float64
        spread[precision] = float(np.std(total.values))
    assert spread["mixed"] < 1.5 * spread["double"], spread


def test_restart_from_checkpoint_is_bit_identical(small_water_box, tmp_path):
    system, x, box = small_water_box
    integ = langevin(system, timestep=0.002, temperature=300.0)
    s0 = integ.init(x, key=jax.random.key(7), temperature=300.0)
    assert s0.neighbors is not None
    ck = CheckpointReporter(tmp_path / "ck.npz", every=50)
    full = simulate(integ, s0, 100, reporters=[ck], chunk=25)
    # the checkpoint now holds step 100; take one at 50 by re-running half
    half = simulate(integ, s0, 50, reporters=[ck], chunk=25)
    resumed = simulate(integ, load_checkpoint(tmp_path / "ck.npz", integ), 50, chunk=25)
    assert int(half.step) == 50 and int(resumed.step) == 100
    assert np.array_equal(np.asarray(resumed.positions), np.asarray(full.positions))
    assert np.array_equal(np.asarray(resumed.velocities), np.asarray(full.velocities))


def test_overflowing_list_is_regrown_and_the_chunk_rerun(small_water_box):
    """A list with no head room overflows within a chunk; the runner regrows it (wider than
    before, so the replay cannot overflow at the same step again) and re-runs the chunk: the
    same trajectory as with a roomy list."""
    from chronograd.space.neighbor_list import regrow

    system, x, box = small_water_box
    integ = langevin(system, timestep=0.002, temperature=300.0)
    s0 = integ.init(x, key=jax.random.key(5), temperature=300.0)
    fns = system.neighbor_list()
    tight = fns.allocate(x, box, max_neighbors=int(s0.neighbors.max_neighbors / 1.15))
    assert not bool(fns.update(jnp.asarray(x), tight, jnp.asarray(box)).did_overflow)
    roomy = fns.allocate(x, box, max_neighbors=2 * s0.neighbors.max_neighbors)
    grown = regrow(fns, jnp.asarray(x), tight, jnp.asarray(box))
    assert grown.max_neighbors >= 1.25 * tight.max_neighbors
    a = simulate(integ, s0._replace(neighbors=tight), 100, chunk=50)
    b = simulate(integ, s0._replace(neighbors=roomy), 100, chunk=50)
    assert a.neighbors.max_neighbors > tight.max_neighbors
    assert np.allclose(np.asarray(a.positions), np.asarray(b.positions), atol=1e-9, rtol=0)


def test_same_key_same_run_and_blow_up_is_named(small_water_box):
    system, x, box = small_water_box
    integ = langevin(system, timestep=0.002, temperature=300.0)
    a = simulate(integ, integ.init(x, key=jax.random.key(3), temperature=300.0), 50)
    b = simulate(integ, integ.init(x, key=jax.random.key(3), temperature=300.0), 50)
    assert np.array_equal(np.asarray(a.positions), np.asarray(b.positions))
    hot = langevin(system, timestep=0.05, temperature=300.0)
    start = hot.init(x, key=jax.random.key(0), temperature=3000.0)
    with pytest.raises(SimulationError, match=r"blew up at step \d+") as err:
        simulate(hot, start, 500)
    assert int(err.value.last_good_state.step) % 100 == 0


def test_reporters_write_readable_files(small_water_box, tmp_path):
    import mdtraj

    system, x, box = small_water_box
    integ = langevin(system, timestep=0.002, temperature=300.0)
    reps = [StateDataReporter(tmp_path / "s.csv", 10), DCDReporter(tmp_path / "t.dcd", 20),
            XTCReporter(tmp_path / "t.xtc", 20)]
    simulate(integ, integ.init(x, key=jax.random.key(0), temperature=300.0), 60,
             reporters=reps)
    for r in reps:
        r.close()
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40, 50, 60]
    assert float(rows[0]["density_g_ml"]) == pytest.approx(
        float(np.sum(system.masses)) / 6.02214076e23 / (1.9 ** 3 * 1e-21))
    with mdtraj.formats.XTCTrajectoryFile(str(tmp_path / "t.xtc")) as f:
        xyz, time, step, boxes = f.read()
    assert xyz.shape == (3, system.n_atoms, 3) and list(step) == [20, 40, 60]
    assert np.allclose(boxes[0], box, atol=1e-6)
    with mdtraj.formats.DCDTrajectoryFile(str(tmp_path / "t.dcd")) as f:
        xyz_dcd, lengths, _ = f.read()
    assert np.allclose(xyz_dcd / 10.0, xyz, atol=1e-3)  # XTC keeps 3 decimals (nm)
    assert np.allclose(lengths, 19.0)
