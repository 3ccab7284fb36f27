"""Long physics checks on a water box (Sage TIP3P, rigid, PME; marked slow): NVE energy
drift, and the canonical kinetic-energy distribution under Langevin (middle and BAOAB) and
Nose-Hoover."""

import jax
import numpy as np
import pytest

import chronograd as cg
from chronograd.dynamics import BOLTZMANN, langevin, nose_hoover, velocity_verlet
from chronograd.dynamics.constraints import rattle_velocities
from chronograd.dynamics.runner import simulate
from chronograd.minimize import minimize
from chronograd.topology.boxes import water_box

pytestmark = pytest.mark.slow
T = 300.0


@pytest.fixture(scope="module")
def equilibrated():
    mols, pos, box = water_box(1.9)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    x = minimize(system, pos, box, tolerance=50.0).positions
    lg = langevin(system, timestep=0.002, temperature=T, friction=5.0)
    state = simulate(lg, lg.init(x, key=jax.random.key(0), temperature=T), 2500)
    return system, state


class Temperatures:
    """Kinetic temperature every ``every`` steps, of the state's velocities or (``half_step``)
    of BAOAB's half-step velocities, those right after its O step: P(v - dt/2 F/m), P the
    constraint projection. BAOAB's on-step velocities are cold by O(dt^2): by w^2 dt^2 / 4 for
    a harmonic mode of frequency w (Leimkuhler & Matthews 2013), ~0.5 % here at 2 fs from the
    rigid waters' librations; its half-step velocities (those LangevinMiddle reports) are exact
    in the harmonic limit."""

    def __init__(self, integ, every=10, half_step=False):
        self.every, self.integ, self.values = every, integ, []
        inv_m = 1.0 / np.asarray(integ.system.masses)[:, None]
        dt = integ.timestep

        def velocities(s):
            if not half_step:
                return s.velocities
            return rattle_velocities(s.velocities - 0.5 * dt * s.forces * inv_m,
                                     s.positions, integ.constraints, s.box)
        self.velocities = jax.jit(velocities)

    def report(self, s, info):
        self.values.append(float(cg.dynamics.temperature(self.velocities(s), info["masses"],
                                                         self.integ.dof)))


def check_canonical(temps, dof):
    """Mean T within 1 %; variance of T equal to 2 T^2 / dof within 3 block standard errors."""
    temps = np.asarray(temps)
    assert np.mean(temps) == pytest.approx(T, rel=0.01)
    # squared deviations from the run's mean, block-averaged: variances within short blocks
    # would miss the slow (energy-exchange) part of the fluctuations
    blocks = np.array_split((temps - temps.mean()) ** 2, 10)
    means = np.array([b.mean() for b in blocks])
    var, err = means.mean(), means.std(ddof=1) / np.sqrt(len(blocks))
    expected = 2 * T ** 2 / dof
    assert err < 0.25 * expected  # the check has power
    assert abs(var - expected) < 3 * err, (var, expected, err)


@pytest.mark.parametrize("make", [
    lambda system: langevin(system, timestep=0.002, temperature=T, friction=5.0),
    lambda system: langevin(system, timestep=0.002, temperature=T, friction=5.0,
                            scheme="baoab"),
    lambda system: nose_hoover(system, timestep=0.002, temperature=T, tau=0.1),
], ids=["langevin-middle", "langevin-baoab", "nose-hoover"])
def test_kinetic_energy_is_canonical(equilibrated, make):
    system, state = equilibrated
    integ = make(system)
    s = integ.init(state.positions, key=jax.random.key(1), velocities=state.velocities)
    s = simulate(integ, s, 1000)
    rec = Temperatures(integ, half_step=integ.name == "langevin-baoab")
    simulate(integ, s, 10000, reporters=[rec])
    check_canonical(rec.values, integ.dof)


def test_nve_energy_drift_is_small(equilibrated):
    system, state = equilibrated
    integ = velocity_verlet(system, timestep=0.001)
    s = integ.init(state.positions, key=jax.random.key(3), velocities=state.velocities)
    masses = np.asarray(system.masses)
    energies = []

    class Total:
        every = 100

        def report(self, st, info):
            energies.append(float(st.potential_energy) + 0.5 * float(
                np.sum(masses[:, None] * np.asarray(st.velocities) ** 2)))

    simulate(integ, s, 10000, reporters=[Total()])  # 10 ps
    slope = np.polyfit(np.arange(len(energies)) * 0.1, energies, 1)[0]  # kJ/mol/ps
    drift = slope * 1000 / integ.dof / (BOLTZMANN * T)  # kT per ns per dof
    assert abs(drift) < 0.05
    assert np.std(energies) < 1.0  # kJ/mol, for ~1,200 degrees of freedom
