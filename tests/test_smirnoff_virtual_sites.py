"""SMIRNOFF VirtualSites (the 4- and 5-site water models of the openforcefields package) vs
OpenFF Interchange's OpenMM export: particle layout, site positions, energies and forces; Sage
combined with TIP4P-Ew; gradients in the site parameters; .offxml round trip."""

import jax
import numpy as np
import openmm
import pytest
from reference_systems import openmm_energy_forces
from scipy.spatial.transform import Rotation

import chronograd as cg
from chronograd.forcefield import ForceField
from chronograd.forcefield.charges import gasteiger_charges
from chronograd.topology import Molecule

pytestmark = pytest.mark.filterwarnings("ignore:Preset charges were provided")

WATER_MODELS = ["tip4p_ew.offxml", "tip4p_fb.offxml", "opc.offxml", "tip5p.offxml"]


def water_lattice(n_side=6, spacing=0.31, seed=0, solute=None):
    """Randomly oriented waters on a cubic lattice (optionally around a solute at the
    centre): (molecules, atom positions [n, 3] nm, box)."""
    water = Molecule.from_smiles("O", name="water")
    length = n_side * spacing
    rng = np.random.default_rng(seed)
    w0 = water.positions - water.positions.mean(0)
    mols, pos = [], []
    if solute is not None:
        centre = solute.positions - solute.positions.mean(0) + length / 2
        mols.append(solute)
        pos.append(centre)
    for idx in np.ndindex(n_side, n_side, n_side):
        p = (np.array(idx) + 0.5) * spacing
        if solute is not None and np.min(np.linalg.norm(pos[0] - p, axis=1)) < 0.35:
            continue
        rot = Rotation.random(random_state=rng).as_matrix()
        mols.append(water)
        pos.append(w0 @ rot.T + p)
    return mols, np.concatenate(pos), np.eye(3) * length


def interchange_reference(offxmls, mols, box, solute_charges=None):
    from openff.interchange import Interchange
    from openff.toolkit import ForceField as OFFForceField
    from openff.toolkit import Molecule as OFFMolecule
    from openff.toolkit import Topology
    from openff.units import unit

    off = {}
    for m in mols:
        if m.name not in off:
            off[m.name] = OFFMolecule.from_rdkit(m.rdmol, allow_undefined_stereo=True)
    preset = []
    if solute_charges is not None:
        off[mols[0].name].partial_charges = solute_charges * unit.elementary_charge
        preset = [off[mols[0].name]]
    top = Topology.from_molecules([off[m.name] for m in mols])
    top.box_vectors = box * unit.nanometer
    ic = Interchange.from_smirnoff(OFFForceField(*offxmls), top, charge_from_molecules=preset)
    return ic.to_openmm_system()


def openmm_site_positions(omm, pos, box):
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in box])
    ctx.setPositions(pos)
    ctx.computeVirtualSites()
    return np.asarray(ctx.getState(getPositions=True).getPositions(asNumpy=True)._value)


def padded(pos, n_particles):
    full = np.zeros((n_particles, 3))
    full[: len(pos)] = pos
    return full


@pytest.mark.parametrize("offxml", WATER_MODELS)
def test_water_model_equals_interchange(offxml):
    mols, pos, box = water_lattice()
    system = ForceField(offxml).create_system(mols, box=box)
    ref = interchange_reference([offxml], mols, box)
    n_sites = {"tip5p.offxml": 2}.get(offxml, 1) * len(mols)
    assert system.n_atoms == ref.getNumParticles() == len(pos) + n_sites
    assert system.virtual_site_indices.tolist() == [
        i for i in range(ref.getNumParticles()) if ref.isVirtualSite(i)]
    # site positions as OpenMM places them from Interchange's LocalCoordinatesSites
    from chronograd.system.virtual_sites import place_virtual_sites

    full = padded(pos, system.n_atoms)
    mine = np.asarray(place_virtual_sites(jax.numpy.asarray(full), system.virtual_sites,
                                          system.slots()))
    assert np.abs(mine - openmm_site_positions(ref, full, box)).max() < 1e-12
    # per-particle charges and LJ identical (sites carry minus the sum of the increments)
    nb = next(f for f in ref.getForces() if isinstance(f, openmm.NonbondedForce))
    slots = system.slots()["Nonbonded"]
    ref_q = np.array([nb.getParticleParameters(i)[0]._value for i in range(nb.getNumParticles())])
    np.testing.assert_allclose(np.asarray(slots["charge"]), ref_q, atol=1e-12)
    assert abs(float(np.sum(slots["charge"]))) < 1e-10
    # energies and forces; positions of the real atoms only are accepted
    e_ref, f_ref = openmm_energy_forces(ref, full, box)
    e, f = system.energy_and_forces(pos, box)
    assert abs(e - e_ref) <= 1e-8 * abs(e_ref)
    assert np.abs(f - f_ref)[: len(pos)].max() < 1e-6
    # the exported system is Interchange's, energy for energy
    assert openmm_energy_forces(cg.to_openmm(system), full, box)[0] == pytest.approx(
        e_ref, rel=1e-12)


def test_sage_with_tip4pew_equals_interchange():
    solute = Molecule.from_smiles("CC(=O)Nc1ccccc1", name="acetanilide")
    solute.partial_charges = gasteiger_charges(solute)
    mols, pos, box = water_lattice(solute=solute)
    offxmls = ["openff-2.2.1.offxml", "tip4p_ew.offxml"]
    ff = ForceField(*offxmls)
    system = ff.create_system(mols, charges="from-file", box=box)
    ref = interchange_reference(offxmls, mols, box, solute.partial_charges)
    assert system.n_atoms == ref.getNumParticles() == len(pos) + len(mols) - 1
    full = padded(pos, system.n_atoms)
    e_ref, f_ref = openmm_energy_forces(ref, full, box)
    e, f = system.energy_and_forces(full, box)
    assert abs(e - e_ref) <= 1e-8 * abs(e_ref)
    assert np.abs(f - f_ref)[: len(pos)].max() < 1e-6
    # later files win: water takes TIP4P-Ew's parameters, not Sage's TIP3P
    used = {pid for (h, pid) in ff.instances(system)}
    assert "n-tip4p-ew-O" in used and "n-tip3p-O" not in used


def test_incompatible_handlers_are_named(tmp_path):
    from chronograd.errors import InputError
    from chronograd.forcefield.offxml import resolve_offxml

    text = resolve_offxml("tip4p_ew.offxml").read_text().replace(
        'cutoff="9.0 * angstrom ** 1" switch_width="1.0', 'cutoff="10.0 * angstrom ** 1" '
        'switch_width="1.0')
    bad = tmp_path / "bad.offxml"
    bad.write_text(text)
    with pytest.raises(InputError, match=r"<vdW> cutoff=.*10.0.*incompatible"):
        ForceField("openff-2.2.1.offxml", bad)


def _flat_index(ff, handler, attr, file_attr, pid):
    from chronograd.system.source import theta_offsets

    info = ff.row_info[handler][attr]
    pos = next(k for k, (i, a) in enumerate(zip(info.ids, info.file_attribute, strict=True))
               if i == pid and a == file_attr)
    return theta_offsets(ff.params)[(handler, attr)] + pos


@pytest.mark.parametrize("offxml,attr,file_attr", [
    ("tip5p.offxml", "distance", "distance"),
    ("tip5p.offxml", "outOfPlaneAngle", "outOfPlaneAngle"),
    ("tip5p.offxml", "charge_increment", "charge_increment2"),
    ("tip4p_ew.offxml", "distance", "distance"),
    ("opc.offxml", "charge_increment", "charge_increment3"),
])
def test_site_parameter_gradients_equal_finite_differences(offxml, attr, file_attr):
    from jax.flatten_util import ravel_pytree

    mols, pos, box = water_lattice(n_side=2, spacing=0.31, seed=1)  # 8 waters, vacuum
    ff = ForceField(offxml)
    system = ff.create_system(mols)
    full = jax.numpy.asarray(padded(pos, system.n_atoms))
    flat, unravel = ravel_pytree(ff.params)
    pid = ff.row_info["VirtualSites"][attr].ids[0]
    row = _flat_index(ff, "VirtualSites", attr, file_attr, pid)
    energy = jax.jit(lambda t: system.energy_fn()(full, None, unravel(t)))
    grad = jax.grad(energy)(flat)[row]
    h = 1e-5 * max(abs(float(flat[row])), 1.0)
    fd = (energy(flat.at[row].add(h)) - energy(flat.at[row].add(-h))) / (2 * h)
    assert abs(grad) > 1e-3
    assert float(grad) == pytest.approx(float(fd), rel=1e-6)


def test_changed_site_parameters_round_trip_through_offxml(tmp_path):
    from jax.flatten_util import ravel_pytree
    from openff.toolkit import ForceField as OFFForceField

    ff = ForceField("tip5p.offxml")
    mols, pos, box = water_lattice(seed=2)
    flat, unravel = ravel_pytree(ff.params)
    new = dict(ff.params)
    new["VirtualSites"] = {k: v * 1.01 for k, v in ff.params["VirtualSites"].items()}
    ff.to_offxml(tmp_path / "tip5p-new.offxml", new)
    again = ForceField(tmp_path / "tip5p-new.offxml")
    np.testing.assert_allclose(ravel_pytree(again.params)[0], ravel_pytree(new)[0], rtol=1e-15)
    OFFForceField(str(tmp_path / "tip5p-new.offxml"))  # the toolkit loads it
    # energy at the new theta = energy of the re-read force field = its Interchange export
    system = ff.create_system(mols, box=box)
    e_new = system.energy(pos, box, params=new)
    assert again.create_system(mols, box=box).energy(pos, box) == pytest.approx(e_new, rel=1e-12)
    ref = interchange_reference([str(tmp_path / "tip5p-new.offxml")], mols, box)
    assert openmm_energy_forces(ref, padded(pos, system.n_atoms), box)[0] == pytest.approx(
        e_new, rel=1e-8)
    assert abs(e_new - system.energy(pos, box)) > 1.0


def test_site_instances_name_orientation_atoms():
    ff = ForceField("tip5p.offxml")
    water = Molecule.from_smiles("O", name="water")
    system = ff.create_system([water, water])
    inst = ff.instances(system)
    vs_id = ff.row_info["VirtualSites"]["distance"].ids[0]
    geometry = [where for term, where in inst[("VirtualSites", vs_id)]
                if term == "VirtualSites/DivalentLonePair"]
    assert sorted(geometry) == [(0, 1, 2), (0, 2, 1), (3, 4, 5), (3, 5, 4)]
