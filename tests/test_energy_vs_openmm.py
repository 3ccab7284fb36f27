"""Per-term energies and forces vs OpenMM (Reference platform, double precision) on real systems.

Tolerances from the issue: non-PME terms relative energy error <= 1e-6 and max force error
<= 1e-3 kJ/mol/nm. PME uses the same alpha and grid as OpenMM, so it is held to the same
bounds (OpenMM's own Ewald error at these settings is ~1e-4 relative, far larger).
"""

import itertools

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
from reference_systems import (
    nonbonded_only,
    openmm_energy_forces,
    villin,
    water_box,
    water_box_topology,
)

import chronograd as cg
from chronograd.potentials.dispersion import dispersion_coefficient
from chronograd.system.pairs import explicit_pairs
from chronograd.units import ONE_4PI_EPS0

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)

REL_ENERGY = 1e-6
MAX_FORCE = 1e-3

OPENMM_TERM = {
    "HarmonicBondForce": "harmonic_bond",
    "HarmonicAngleForce": "harmonic_angle",
    "PeriodicTorsionForce": "periodic_torsion",
}


def compare_with_openmm(omm, pos, box):
    system = cg.from_openmm(omm)
    terms = system.energy_terms(pos, box)
    energy, forces = system.energy_and_forces(pos, box)
    e_ref, f_ref = openmm_energy_forces(omm, pos, box)
    assert abs(energy - e_ref) <= REL_ENERGY * abs(e_ref)
    assert np.abs(forces - f_ref).max() <= MAX_FORCE
    # bonded terms: one force group each
    for k, f in enumerate(omm.getForces()):
        f.setForceGroup(k)
    for k, f in enumerate(omm.getForces()):
        name = OPENMM_TERM.get(type(f).__name__)
        if name is None:
            continue
        e_k, _ = openmm_energy_forces(omm, pos, box, groups={k})
        assert abs(terms[name] - e_k) <= REL_ENERGY * max(abs(e_k), 1.0), name
    # nonbonded: Lennard-Jones only (charges zeroed) and Coulomb only (epsilons zeroed)
    bonded = sum(v for k, v in terms.items() if k not in ("lennard_jones", "coulomb"))
    for part, name in (("lj", "lennard_jones"), ("coulomb", "coulomb")):
        e_p, f_p = openmm_energy_forces(nonbonded_only(omm, part), pos, box)
        assert abs(terms[name] - (e_p - bonded)) <= REL_ENERGY * abs(e_p - bonded), name
    return system, energy, e_ref


def test_water_box_pme():
    omm, pos, box = water_box(method=app.PME, ewaldErrorTolerance=1e-6)
    assert omm.getNumParticles() >= 2500
    compare_with_openmm(omm, pos, box)


def assert_pme_parameters_match_context(omm, system, *, dispersion=False):
    """chronograd's (alpha, grid) equal what OpenMM's Reference context chose."""
    nb = [f for f in omm.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    if dispersion:
        alpha, nx, ny, nz = nb.getLJPMEParametersInContext(ctx)
        ours = system.nonbonded.lj_alpha, system.nonbonded.lj_grid
    else:
        alpha, nx, ny, nz = nb.getPMEParametersInContext(ctx)
        ours = system.nonbonded.alpha, system.nonbonded.grid
    assert ours[1] == (nx, ny, nz)
    assert ours[0] == pytest.approx(alpha, rel=1e-14)


def test_water_box_pme_alpha_and_grid_match_openmm_context():
    for tol in (5e-4, 1e-5, 1e-6):
        omm, pos, box = water_box(method=app.PME, ewaldErrorTolerance=tol)
        assert_pme_parameters_match_context(omm, cg.from_openmm(omm))


def test_fft_pme_grid_is_the_grid_openmm_cpu_runs():
    """with_fft_pme_grid rounds each axis as OpenMM's CPU platform does (it ran 30 where the
    Reference platform runs 29); read back from a CPU context after one evaluation, which is
    when its PME kernel chooses the grid."""
    from chronograd.potentials.ewald import fft_dimension

    assert [fft_dimension(k) for k in (17, 22, 26, 29, 41, 89, 143)] == [
        18, 22, 27, 30, 42, 90, 144]
    omm, pos, _ = water_box(method=app.PME, box_nm=2.5)
    nb = [f for f in omm.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    rounded = 0
    for tol, side in itertools.product((5e-4, 2e-5, 1e-6), (2.2, 3.1, 4.0)):
        nb.setEwaldErrorTolerance(tol)
        box = np.diag([side, 1.07 * side, 1.13 * side])
        omm.setDefaultPeriodicBoxVectors(*box)
        system = cg.from_openmm(omm)
        fast = system.with_fft_pme_grid()
        ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("CPU"))
        ctx.setPositions(pos)
        ctx.getState(getEnergy=True)
        assert fast.nonbonded.grid == tuple(nb.getPMEParametersInContext(ctx)[1:]), (tol, side)
        assert fast.nonbonded.explicit_pme_parameters
        rounded += fast.nonbonded.grid != system.nonbonded.grid
    assert rounded >= 5  # the cases exercise the rounding, not only friendly sizes


@pytest.mark.parametrize(("method", "side", "grids"), [
    (app.PME, 3.2, {"grid": (29, 30)}),
    (app.LJPME, 2.9, {"grid": (26, 27), "lj_grid": (13, 14)}),
])
def test_fft_pme_grid_energy_equals_openmm_reference_on_that_grid(method, side, grids):
    """The rounded grids are passed on by to_openmm, so the Reference platform runs the same
    ones and energies and forces agree to the same bounds; the grids differ from the derived
    ones."""
    omm, pos, box = water_box(method=method, box_nm=side)
    system = cg.from_openmm(omm)
    fast = system.with_fft_pme_grid()
    for name, (derived, rounded) in grids.items():
        assert getattr(system.nonbonded, name) == (derived,) * 3
        assert getattr(fast.nonbonded, name) == (rounded,) * 3
    energy, forces = fast.energy_and_forces(pos, box)
    e_ref, f_ref = openmm_energy_forces(cg.to_openmm(fast), pos, box)
    assert abs(energy - e_ref) <= REL_ENERGY * abs(e_ref)
    assert np.abs(forces - f_ref).max() <= MAX_FORCE
    e_exact, f_exact = system.energy_and_forces(pos, box)
    assert np.abs(f_exact - forces).max() > 10 * MAX_FORCE  # a different grid, not a no-op
    # the two grids differ by less than PME's own error at this tolerance (5e-4)
    assert abs(e_exact - energy) <= system.nonbonded.ewald_error_tolerance * abs(e_ref)


def test_water_box_ljpme():
    # OpenMM ignores the switching function with LJPME; so must chronograd.
    omm, pos, box = water_box(method=app.LJPME, switchDistance=0.75 * u.nanometer)
    system, _, _ = compare_with_openmm(omm, pos, box)
    assert_pme_parameters_match_context(omm, system, dispersion=True)


@pytest.mark.slow
def test_villin_amber14_solvated_ljpme():
    omm, pos, box = villin(True, method=app.LJPME)
    compare_with_openmm(omm, pos, box)


def test_water_box_reaction_field():
    omm, pos, box = water_box(method=app.CutoffPeriodic)
    compare_with_openmm(omm, pos, box)


def test_water_box_switching_and_dispersion_correction():
    omm, pos, box = water_box(method=app.PME, switchDistance=0.75 * u.nanometer)
    system, _, _ = compare_with_openmm(omm, pos, box)
    assert system.nonbonded.switch_distance == pytest.approx(0.75)
    assert system.nonbonded.use_dispersion_correction


def test_small_water_box_ewald():
    omm, pos, box = water_box(method=app.Ewald, cutoff=0.7, box_nm=1.8)
    compare_with_openmm(omm, pos, box)


def solvated_triclinic(vectors, method, cutoff):
    ff = app.ForceField("amber14/tip3p.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(ff, boxVectors=[openmm.Vec3(*v) * u.nanometer for v in vectors])
    omm = ff.createSystem(modeller.topology, nonbondedMethod=method,
                          nonbondedCutoff=cutoff * u.nanometer, rigidWater=False)
    box = np.array(modeller.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    pos = np.array(modeller.positions.value_in_unit(u.nanometer))
    return omm, pos, box


def test_triclinic_water_pme():
    vectors = ((3.2, 0, 0), (0.6, 3.1, 0), (-0.5, 0.7, 3.0))
    omm, pos, box = solvated_triclinic(vectors, app.PME, 0.9)
    compare_with_openmm(omm, pos, box)


def test_dodecahedron_pairs_equal_exhaustive_image_search():
    """In a rhombic dodecahedron OpenMM's Reference platform differs from an exhaustive
    image search (its CPU platform agrees with it); so the reference here is that search."""
    d = 2.4
    omm, pos, box = solvated_triclinic(((d, 0, 0), (0, d, 0), (d / 2, d / 2, d / 2**0.5)),
                                       app.CutoffPeriodic, 0.8)
    system = cg.from_openmm(omm)
    terms = system.energy_terms(pos, box)
    nb, p = system.nonbonded, system.params["nonbonded"]
    q, sig, eps = (np.asarray(p[k]) for k in ("charge", "sigma", "epsilon"))
    i, j = explicit_pairs(nb.n_atoms, nb.exception_atoms).T
    dr = pos[i] - pos[j]
    r = np.full(len(i), np.inf)
    for a, b, c in itertools.product((-1, 0, 1), repeat=3):
        r = np.minimum(r, np.linalg.norm(dr + a * box[0] + b * box[1] + c * box[2], axis=1))
    inside = r < nb.cutoff
    s6 = (0.5 * (sig[i] + sig[j]) / r) ** 6
    lj = np.sum((4 * np.sqrt(eps[i] * eps[j]) * (s6 * s6 - s6))[inside])
    k_rf = (78.3 - 1) / ((2 * 78.3 + 1) * 0.8**3)
    c_rf = 3 * 78.3 / ((2 * 78.3 + 1) * 0.8)
    coul = np.sum((ONE_4PI_EPS0 * q[i] * q[j] * (1 / r + k_rf * r**2 - c_rf))[inside])
    ex = nb.exception_atoms
    r_ex = np.linalg.norm(pos[ex[:, 0]] - pos[ex[:, 1]], axis=1)
    coul += np.sum(ONE_4PI_EPS0 * np.asarray(p["exception_charge_prod"]) / r_ex)
    disp = float(dispersion_coefficient(p["sigma"], p["epsilon"], nb.lj_class,
                                        nb.lj_class_counts, nb.cutoff)) / np.linalg.det(box)
    assert terms["lennard_jones"] == pytest.approx(lj + disp, rel=1e-10)
    assert terms["coulomb"] == pytest.approx(coul, rel=1e-10)


@pytest.mark.parametrize("method", [app.NoCutoff, app.CutoffNonPeriodic])
def test_villin_amber14_vacuum(method):
    omm, pos, box = villin(False, method=method)
    compare_with_openmm(omm, pos, None)


def test_villin_amber14_solvated_pme():
    omm, pos, box = villin(True)
    assert omm.getNumParticles() > 8000
    compare_with_openmm(omm, pos, box)


def test_water_topology_is_deterministic():
    _, pos, _ = water_box_topology(3.0)
    assert pos.shape[0] >= 2500
