"""ChargeIncrementModel: charges equal OpenFF Interchange's, increments are differentiable."""

import jax
import jax.numpy as jnp
import numpy as np
import openmm
import pytest
from smirnoff_reference import _offff

import chronograd as cg
from chronograd.forcefield.offxml import resolve_offxml

CIM = """<ChargeIncrementModel version="0.4" number_of_conformers="1"
 partial_charge_method="formal_charge">
  <ChargeIncrement smirks="[#6X4:1]-[#1:2]" charge_increment1="-0.06 * elementary_charge"
   id="ci-ch"/>
  <ChargeIncrement smirks="[#8:1]-[#1:2]" charge_increment1="-0.41 * elementary_charge"
   charge_increment2="0.41 * elementary_charge" id="ci-oh"/>
  <ChargeIncrement smirks="[#6X3:1]=[#8X1+0:2]" charge_increment1="0.32 * elementary_charge"
   id="ci-co"/>
  <ChargeIncrement smirks="[#7:1]-[#1:2]" charge_increment1="-0.33 * elementary_charge"
   id="ci-nh"/>
  <ChargeIncrement smirks="[#6:1]-[#7:2]" charge_increment1="0.11 * elementary_charge"
   charge_increment2="-0.11 * elementary_charge" id="ci-cn"/>
  <ChargeIncrement smirks="[#6X3:1]-[#1:2]" charge_increment1="-0.13 * elementary_charge"
   id="ci-arh"/>
</ChargeIncrementModel>
"""


@pytest.fixture(scope="module")
def cim_offxml(tmp_path_factory):
    text = resolve_offxml("openff_unconstrained-2.2.1.offxml").read_text()
    text = text.replace('<ToolkitAM1BCC version="0.3"></ToolkitAM1BCC>', CIM)
    path = tmp_path_factory.mktemp("cim") / "sage-cim.offxml"
    path.write_text(text)
    return str(path)


def interchange_charges(offxml, smiles):
    from openff.interchange import Interchange
    from openff.toolkit import Molecule as OFFMolecule

    mol = cg.Molecule.from_smiles(smiles)
    off = OFFMolecule.from_rdkit(mol.rdmol, allow_undefined_stereo=True)
    omm = Interchange.from_smirnoff(_offff(offxml), [off]).to_openmm_system()
    nb = [f for f in omm.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    q = [nb.getParticleParameters(i)[0].value_in_unit(openmm.unit.elementary_charge)
         for i in range(nb.getNumParticles())]
    return mol, np.array(q), omm


@pytest.mark.parametrize("smiles", ["CCO", "CC(=O)Nc1ccccc1", "C[NH3+]", "OCC(=O)O",
                                    "c1ccncc1C(=O)[O-]"])
def test_charges_and_energy_equal_interchange(cim_offxml, smiles):
    from reference_systems import openmm_energy_forces

    mol, q_ref, omm = interchange_charges(cim_offxml, smiles)
    ff = cg.ForceField(cim_offxml)
    system = ff.create_system(mol)
    q = np.asarray(system.slots()["Nonbonded"]["charge"])
    np.testing.assert_allclose(q, q_ref, atol=1e-12)
    assert q.sum() == pytest.approx(mol.total_charge, abs=1e-12)
    e_ref, _ = openmm_energy_forces(omm, mol.positions)
    assert system.energy(mol.positions) == pytest.approx(e_ref, rel=1e-9)


def test_charge_increment_gradients_equal_finite_differences(cim_offxml):
    ff = cg.ForceField(cim_offxml)
    mol = cg.Molecule.from_smiles("CC(=O)Nc1ccccc1")
    system = ff.create_system(mol)
    x = jnp.asarray(mol.positions)
    U = jax.jit(system.energy_fn())
    g = np.asarray(jax.grad(system.energy_fn(), argnums=2)(x, None, ff.params)[
        "ChargeIncrementModel"]["charge_increment"])
    base = ff.params["ChargeIncrementModel"]["charge_increment"]
    used = np.flatnonzero(g)
    assert used.size >= 3
    for row in used:
        def at(d, row=row):
            p = dict(ff.params)
            p["ChargeIncrementModel"] = {"charge_increment": base.at[row].add(d)}
            return float(U(x, None, p))

        fd = (at(1e-6) - at(-1e-6)) / 2e-6
        assert g[row] == pytest.approx(fd, rel=1e-6, abs=1e-6)
