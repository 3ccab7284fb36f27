"""Minimizers vs OpenMM's LocalEnergyMinimizer (same system, same start, same tolerance)."""

import numpy as np
import openmm
import openmm.unit as u
import pytest

import chronograd as cg
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.minimize import minimize

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)

CASES = {"ethylene glycol": "OCCO", "acetanilide": "CC(=O)Nc1ccccc1",
         "1-naphthoic acid": "c1ccc2ccccc2c1C(=O)O"}


def openmm_minimum(system, positions, tolerance):
    ctx = openmm.Context(cg.to_openmm(system), openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(ctx, tolerance, 0)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)


@pytest.fixture(scope="module")
def systems():
    ff = cg.ForceField("openff_unconstrained-2.2.1.offxml")
    out = {}
    for name, smi in CASES.items():
        mol = cg.Molecule.from_smiles(smi, name=name)
        mol.partial_charges = gasteiger_charges(mol)
        out[name] = (ff.create_system(mol, charges="from-file"), mol.positions)
    return out


@pytest.mark.parametrize("name", [list(CASES)[0]] + [
    pytest.param(name, marks=pytest.mark.slow) for name in list(CASES)[1:]])
def test_lbfgs_reaches_openmm_minimum(systems, name):
    system, x0 = systems[name]
    result = minimize(system, x0, method="lbfgs", tolerance=1.0)
    assert result.status == "converged" and result.rms_force < 1.0
    e_ref = openmm_minimum(system, x0, 1.0)
    assert result.energy == pytest.approx(e_ref, abs=0.05)
    assert result.energy < system.energy(x0) - 1.0
    assert result.energy == pytest.approx(system.energy(result.positions), rel=1e-12)


@pytest.mark.parametrize("name", ["ethylene glycol", "1-naphthoic acid"])
def test_fire_reaches_openmm_minimum(systems, name):
    system, x0 = systems[name]
    result = minimize(system, x0, method="fire", tolerance=1.0)
    assert result.status == "converged"
    assert result.energy == pytest.approx(openmm_minimum(system, x0, 1.0), abs=0.05)


def test_constrained_water_box_minimizes_with_constraints_kept():
    from chronograd.dynamics.constraints import build_constraints, constraint_error
    from chronograd.topology.boxes import water_box

    mols, pos, box = water_box(1.9)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    con = build_constraints(system.constraints, system.constraint_distances, system.masses)
    for method in ("lbfgs", "fire"):
        result = minimize(system, pos, box, method=method, tolerance=50.0)
        assert result.status == "converged", method
        assert result.energy < system.energy(pos, box) - 1000.0
        assert float(constraint_error(result.positions, con)) < 1e-10


def test_mixed_precision_minimizer_reaches_the_same_minimum(systems):
    """precision="mixed" searches with float32 energies and forces (float64 positions and
    history); the result is judged in float64: converged, at OpenMM's minimum; on a rigid
    water box, converged with the constraints kept (L-BFGS paths part ways in float32 and
    end in different minima of similar depth, -9478 vs -9501 kJ/mol; FIRE's do not)."""
    from chronograd.dynamics.constraints import build_constraints, constraint_error
    from chronograd.topology.boxes import water_box

    system, x0 = systems["ethylene glycol"]
    result = minimize(system, x0, tolerance=1.0, precision="mixed")
    assert result.status == "converged" and result.rms_force < 1.0
    assert result.energy == pytest.approx(openmm_minimum(system, x0, 1.0), abs=0.05)
    assert result.energy == pytest.approx(system.energy(result.positions), rel=1e-12)
    mols, pos, box = water_box(1.9)
    water = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    con = build_constraints(water.constraints, water.constraint_distances, water.masses)
    start = water.energy(pos, box)
    for method in ("lbfgs", "fire"):
        mixed = minimize(water, pos, box, method=method, tolerance=10.0, precision="mixed")
        assert mixed.status == "converged" and mixed.rms_force < 10.0, method
        assert float(constraint_error(mixed.positions, con)) < 1e-10
        assert mixed.energy < start - 3000.0, method  # -5647 -> about -9500 kJ/mol
    # FIRE's path is short enough (153 steps) that float32 forces keep it: the same minimum
    double = minimize(water, pos, box, method="fire", tolerance=10.0)
    assert mixed.energy == pytest.approx(double.energy, rel=1e-4)
    with pytest.raises(cg.InputError, match="precision must be one of"):
        minimize(system, x0, precision="half")


def test_tight_tolerances_converge_with_constraints_kept():
    """Below the restraint's floor (SHAKE moves the restrained minimum: RMS ~0.9 kJ/mol/nm on
    ethylene glycol at k = 1e6) the search goes on in float64 with stiffer restraints; before,
    it ended at 0.9 after ~250 iterations and was labeled "max_iterations" (budget 10,000).
    precision="mixed" gets the same float64 polish (issue 19's ibuprofen run stopped its
    float32 search at RMS 10.2 > 10 and was told it hit its iteration limit)."""
    from chronograd.dynamics.constraints import build_constraints, constraint_error

    mol = cg.Molecule.from_smiles(CASES["ethylene glycol"], name="ethylene glycol")
    mol.partial_charges = gasteiger_charges(mol)
    system, x0 = cg.ForceField("openff-2.2.1.offxml").create_system(mol, charges="from-file"), \
        mol.positions
    assert len(system.constraints) == 6  # the X-H bonds
    con = build_constraints(system.constraints, system.constraint_distances, system.masses)
    energies = []
    for precision in ("double", "mixed"):
        result = minimize(system, x0, tolerance=0.01, precision=precision)
        assert result.status == "converged" and result.rms_force < 0.01, precision
        assert result.iterations < 10000
        assert float(constraint_error(result.positions, con)) < 1e-10
        assert result.energy == pytest.approx(system.energy(result.positions), rel=1e-12)
        energies.append(result.energy)
    assert energies[0] == pytest.approx(energies[1], abs=1e-6)
    assert energies[0] <= openmm_minimum(system, x0, 1.0) + 1e-3


def test_max_iterations_is_a_status_not_an_exception(systems):
    system, x0 = systems["acetanilide"]
    result = minimize(system, x0, method="lbfgs", tolerance=1e-6, max_iterations=5)
    assert result.status == "max_iterations" and result.iterations == 5
    assert np.all(np.isfinite(result.positions))
