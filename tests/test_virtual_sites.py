"""Virtual sites imported from OpenMM (TIP4P-Ew): energies and forces vs OpenMM, round trips."""

import jax.numpy as jnp
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
from reference_systems import openmm_energy_forces

import chronograd as cg
from chronograd.system.virtual_sites import VirtualSites, place_virtual_sites

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)


@pytest.fixture(scope="module")
def tip4pew_box():
    ff = app.ForceField("amber14-all.xml", "amber14/tip4pew.xml")
    m = app.Modeller(app.Topology(), [])
    m.addSolvent(ff, model="tip4pew", boxSize=openmm.Vec3(3, 3, 3) * u.nanometer)
    omm = ff.createSystem(m.topology, nonbondedMethod=app.PME,
                          nonbondedCutoff=0.9 * u.nanometer, rigidWater=False)
    pos = np.array(m.positions.value_in_unit(u.nanometer))
    box = np.array(m.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    return omm, pos, box


def test_tip4pew_energy_and_forces_equal_openmm(tip4pew_box):
    omm, pos, box = tip4pew_box
    system = cg.from_openmm(omm)
    sites = np.concatenate([vs.sites for vs in system.virtual_sites])
    assert sites.size == omm.getNumParticles() // 4
    e, f = system.energy_and_forces(pos, box)
    e_ref, f_ref = openmm_energy_forces(omm, pos, box)  # after computeVirtualSites
    assert e == pytest.approx(e_ref, rel=1e-10)
    real = np.setdiff1d(np.arange(len(pos)), sites)
    # forces on real atoms include what acts on their sites (OpenMM distributes it the same way)
    assert np.abs(f[real] - f_ref[real]).max() < 1e-6
    # chronograd reports no force on a massless site: it is all on the parents
    assert np.abs(f[sites]).max() == 0.0
    # positions passed in for sites are ignored: they are placed from their parents
    moved = pos.copy()
    moved[sites] += 0.2
    assert system.energy(moved, box) == e


def test_virtual_site_round_trips(tip4pew_box, tmp_path):
    omm, pos, box = tip4pew_box
    system = cg.from_openmm(omm)
    exported = cg.to_openmm(system)
    assert openmm_energy_forces(exported, pos, box)[0] == openmm_energy_forces(omm, pos, box)[0]
    cg.save(system, tmp_path / "tip4p.json")
    loaded = cg.load(tmp_path / "tip4p.json")
    assert loaded.energy(pos, box) == system.energy(pos, box)


def test_site_kinds_match_openmm_formulas():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    cases = [
        (VirtualSites("two_average", np.array([4]), np.array([[0, 1]]), np.array([[0.3, 0.7]])),
         openmm.TwoParticleAverageSite(0, 1, 0.3, 0.7)),
        (VirtualSites("out_of_plane", np.array([4]), np.array([[0, 1, 2]]),
                      np.array([[0.2, 0.3, 0.5]])), openmm.OutOfPlaneSite(0, 1, 2, 0.2, 0.3, 0.5)),
        (VirtualSites("local_coordinates", np.array([4]), np.array([[0, 1, 2]]),
                      np.array([[0.5, 0.3, 0.2, -1, 1, 0, -1, 0, 1, 0.05, -0.02, 0.03]])),
         openmm.LocalCoordinatesSite([0, 1, 2], [0.5, 0.3, 0.2], [-1, 1, 0], [-1, 0, 1],
                                     openmm.Vec3(0.05, -0.02, 0.03))),
    ]
    for ours, site in cases:
        s = openmm.System()
        for _ in range(5):
            s.addParticle(1.0)
        s.setParticleMass(4, 0.0)
        s.setVirtualSite(4, site)
        ctx = openmm.Context(s, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(x)
        ctx.computeVirtualSites()
        want = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(
            u.nanometer)[4]
        got = np.asarray(place_virtual_sites(jnp.asarray(x), (ours,)))[4]
        np.testing.assert_allclose(got, want, atol=1e-12)
