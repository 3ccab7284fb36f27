"""Energies of SMIRNOFF systems vs OpenFF Interchange's OpenMM export (same charges), in
vacuum and in a periodic water box, for openff-2.2.1 and its unconstrained variant."""

import numpy as np
import pytest
from reference_systems import openmm_energy_forces
from smirnoff_reference import interchange_system, mol_to_off, vacuum_cases

import chronograd as cg
from chronograd.forcefield import ForceField
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.topology import Molecule

FORCE_FIELDS = ["openff-2.2.1.offxml", "openff_unconstrained-2.2.1.offxml"]


@pytest.mark.parametrize(
    "offxml, full",
    [(FORCE_FIELDS[0], False)]
    + [pytest.param(f, False, marks=pytest.mark.slow) for f in FORCE_FIELDS[1:]]
    + [pytest.param(f, True, marks=pytest.mark.slow) for f in FORCE_FIELDS],
)
def test_vacuum_energies_equal_interchange(offxml, full):
    ff = ForceField(offxml)
    worst_e, worst_f = 0.0, 0.0
    cases = vacuum_cases(full)
    assert len(cases) >= (100 if full else 20)
    for _, mol in cases:
        mol.partial_charges = gasteiger_charges(mol)
    systems = [ff.create_system(mol, charges="from-file") for _, mol in cases]
    # chronograd's energies and forces of all molecules from one padded batch (two
    # compilations; tests/test_batch.py shows the batch equals per-system evaluation)
    energies, forces = cg.stack_systems(systems, n_buckets=2).energies_and_forces(
        [mol.positions for _, mol in cases])
    for (name, mol), system, e, f in zip(cases, systems, energies, forces, strict=True):
        ref = interchange_system(offxml, mol_to_off(mol), mol.partial_charges)
        e_ref, f_ref = openmm_energy_forces(ref, mol.positions)
        worst_e = max(worst_e, abs(e - e_ref) / max(abs(e_ref), 1.0))
        worst_f = max(worst_f, float(np.abs(f - f_ref).max()))
        assert abs(e - e_ref) <= 1e-6 * max(abs(e_ref), 1.0), name
        # our own export to OpenMM gives the same energy
        e_exp, _ = openmm_energy_forces(cg.to_openmm(system), mol.positions)
        assert abs(e_exp - e_ref) <= 1e-6 * max(abs(e_ref), 1.0), name
    assert worst_f < 1e-3
    print(f"{offxml}: worst relative energy {worst_e:.1e}, worst force {worst_f:.1e}")


def water_box(solute: Molecule, n_side=6, spacing=0.31):
    """Solute at the centre of a cubic lattice of TIP3P-geometry waters (clashes removed)."""
    water = Molecule.from_smiles("O", name="water")
    length = n_side * spacing
    box = np.eye(3) * length
    centre = solute.positions - solute.positions.mean(0) + length / 2
    mols, positions = [solute], [centre]
    w0 = water.positions - water.positions.mean(0)
    for idx in np.ndindex(n_side, n_side, n_side):
        p = (np.array(idx) + 0.5) * spacing
        if np.min(np.linalg.norm(centre - p, axis=1)) < 0.35:
            continue
        mols.append(water)
        positions.append(w0 + p)
    return mols, np.concatenate(positions), box


@pytest.mark.parametrize("offxml", FORCE_FIELDS)
def test_water_box_energies_equal_interchange(offxml):
    from openff.interchange import Interchange
    from openff.toolkit import Topology
    from openff.units import unit
    from smirnoff_reference import _offff

    solute = Molecule.from_smiles("CC(=O)Nc1ccccc1", name="acetanilide")
    solute.partial_charges = gasteiger_charges(solute)
    mols, pos, box = water_box(solute)
    assert len(pos) > 500
    ff = ForceField(offxml)
    system = ff.create_system(mols, charges="from-file", box=box)
    off_solute = mol_to_off(solute)
    off_solute.partial_charges = solute.partial_charges * unit.elementary_charge
    off_water = mol_to_off(mols[1])
    top = Topology.from_molecules([off_solute] + [off_water] * (len(mols) - 1))
    top.box_vectors = box * unit.nanometer
    ic = Interchange.from_smirnoff(_offff(offxml), top, charge_from_molecules=[off_solute])
    ref = ic.to_openmm_system()
    e_ref, f_ref = openmm_energy_forces(ref, pos, box)
    e, f = system.energy_and_forces(pos, box)
    assert abs(e - e_ref) <= 1e-6 * abs(e_ref)
    assert np.abs(f - f_ref).max() < 1e-3
    # the water was typed once and broadcast to every copy
    n_h = int(np.sum(solute.atomic_numbers == 1))
    n_water_constraints = 3 * (len(mols) - 1)
    expected = n_water_constraints + (0 if "unconstrained" in offxml else n_h)
    assert system.constraints.shape[0] == expected
