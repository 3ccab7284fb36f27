"""openff-2.3.0 end to end: NAGL charges assigned by the force field, and every energy term
equal to OpenFF Interchange's OpenMM export on the openff-2.2.1 vacuum set."""

import json
from pathlib import Path

import numpy as np
import openmm
import pytest
from reference_systems import nonbonded_only, openmm_energy_forces
from smirnoff_reference import interchange_system, mol_to_off, vacuum_cases

import chronograd as cg
from chronograd.forcefield import ForceField

FF = "openff-2.3.0.offxml"
REFERENCE = json.loads((Path(__file__).parent.parent / "data/nagl/nagl_reference.json")
                       .read_text())
# OpenMM force -> chronograd term name (the nonbonded force is split into LJ and Coulomb)
OPENMM_TERM = {"HarmonicBondForce": "harmonic_bond", "HarmonicAngleForce": "harmonic_angle",
               "PeriodicTorsionForce": "periodic_torsion"}


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.slow
def test_per_term_energies_equal_interchange(full):
    ff = ForceField(FF)
    cases = vacuum_cases(full)
    assert len(cases) >= (100 if full else 20)
    systems = [ff.create_system(mol) for _, mol in cases]  # charges: NAGLCharges
    terms = cg.stack_systems(systems, n_buckets=2).energy_terms(
        [mol.positions for _, mol in cases])
    reference = {r["name"]: r for r in REFERENCE["molecules"]}
    compared_charges, worst = 0, 0.0
    for k, ((name, mol), system) in enumerate(zip(cases, systems, strict=True)):
        charges = np.asarray(system.slots()["Nonbonded"]["charge"])
        ref = reference.get(name)
        if ref is not None and cg.Molecule.from_mapped_smiles(ref["mapped_smiles"]) \
                .identity() == mol.identity():
            np.testing.assert_allclose(charges, ref["charges"], atol=1e-5, err_msg=name)
            compared_charges += 1
        omm = interchange_system(FF, mol_to_off(mol), charges)
        for g, f in enumerate(omm.getForces()):
            f.setForceGroup(g)
        mine = {t: float(v[k]) for t, v in terms.items()}
        for g, f in enumerate(omm.getForces()):
            term = OPENMM_TERM.get(type(f).__name__)
            if term is not None:
                e_ref, _ = openmm_energy_forces(omm, mol.positions, groups={g})
                worst = max(worst, abs(mine.get(term, 0.0) - e_ref) / max(abs(e_ref), 1.0))
                assert abs(mine.get(term, 0.0) - e_ref) <= 1e-6 * max(abs(e_ref), 1.0), \
                    (name, term)
        bonded = sum(v for t, v in mine.items() if t not in ("lennard_jones", "coulomb"))
        for part, term in (("lj", "lennard_jones"), ("coulomb", "coulomb")):
            e_p, _ = openmm_energy_forces(nonbonded_only(omm, part), mol.positions)
            assert abs(mine[term] - (e_p - bonded)) <= 1e-6 * max(abs(e_p - bonded), 1.0), \
                (name, term)
        assert all(isinstance(f, (openmm.NonbondedForce, openmm.CMMotionRemover))
                   or type(f).__name__ in OPENMM_TERM for f in omm.getForces())
    assert compared_charges >= len(cases) // 2
    print(f"{len(cases)} molecules, charges checked for {compared_charges}; worst relative"
          f" bonded-term difference {worst:.1e}")
