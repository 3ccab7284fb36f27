"""OpenMM import/export round trip, JSON round trip, unsupported input."""

import json

import jax.numpy as jnp
import numpy as np
import openmm
import openmm.app as app
import pytest
from reference_systems import openmm_energy_forces, villin, water_box

import chronograd as cg


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for attr in a[name]:
            np.testing.assert_array_equal(np.asarray(a[name][attr]), np.asarray(b[name][attr]))


@pytest.mark.parametrize("solvated", [False, True])
def test_openmm_round_trip_is_exact(solvated):
    omm, pos, box = villin(solvated)
    system = cg.from_openmm(omm)
    exported = cg.to_openmm(system)
    again = cg.from_openmm(exported)
    assert_same_params(system.params, again.params)
    for t1, t2 in zip(system.terms, again.terms, strict=True):
        assert t1.kind == t2.kind and t1.name == t2.name
    e1, f1 = openmm_energy_forces(omm, pos, box)
    e2, f2 = openmm_energy_forces(exported, pos, box)
    assert e1 == e2
    np.testing.assert_array_equal(f1, f2)


def test_export_with_new_params_changes_openmm_energy_consistently():
    omm, pos, box = water_box(method=app.CutoffPeriodic, box_nm=2.0)
    system = cg.from_openmm(omm)
    params = {k: dict(v) for k, v in system.params.items()}
    params["nonbonded"]["charge"] = system.params["nonbonded"]["charge"] * 0.9
    e_cg = system.energy(pos, box, params=params)
    e_omm, _ = openmm_energy_forces(cg.to_openmm(system, params), pos, box)
    assert e_cg == pytest.approx(e_omm, rel=1e-10)


def test_json_round_trip_is_exact(tmp_path):
    omm, pos, box = water_box(method=app.PME, box_nm=2.0)
    system = cg.from_openmm(omm)
    path = tmp_path / "system.json"
    cg.save(system, path)
    loaded = cg.load(path)
    assert_same_params(system.params, loaded.params)
    np.testing.assert_array_equal(system.masses, loaded.masses)
    np.testing.assert_array_equal(system.box, loaded.box)
    assert loaded.nonbonded.grid == system.nonbonded.grid
    assert system.energy(pos, box) == loaded.energy(pos, box)
    data = json.loads(path.read_text())
    assert data["schema"] == "chronograd.system" and data["version"] == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.pop("masses"), "masses"),
        (lambda d: d["terms"][0].update(kind="cmap_torsion"), "unknown term kind"),
        (lambda d: d["terms"][0]["params"].pop("k"), "missing"),
        (lambda d: d.update(schema="something-else"), "not a chronograd system"),
    ],
)
def test_bad_json_gets_a_clear_error(tmp_path, mutate, message):
    omm, _, _ = villin(False)
    path = tmp_path / "s.json"
    cg.save(cg.from_openmm(omm), path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(cg.SchemaError, match=message):
        cg.load(path)


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"schema": "chronograd.system",\n "version": 1,\n "masses": [1.0,,]}')
    with pytest.raises(cg.SchemaError, match="line 3"):
        cg.load(path)


def test_unsupported_force_is_named():
    omm, _, _ = villin(False)
    omm.addForce(openmm.CustomCompoundBondForce(2, "distance(p1, p2)^2"))
    with pytest.raises(cg.UnsupportedForceError, match="CustomCompoundBondForce"):
        cg.from_openmm(omm)


def test_ljpme_json_and_openmm_round_trip(tmp_path):
    omm, pos, box = water_box(method=app.LJPME, box_nm=2.0)
    system = cg.from_openmm(omm)
    cg.save(system, tmp_path / "ljpme.json")
    loaded = cg.load(tmp_path / "ljpme.json")
    assert loaded.nonbonded.lj_grid == system.nonbonded.lj_grid
    assert loaded.energy(pos, box) == system.energy(pos, box)
    e1, _ = openmm_energy_forces(omm, pos, box)
    e2, _ = openmm_energy_forces(cg.to_openmm(loaded), pos, box)
    assert e1 == e2


def test_parameter_offsets_are_rejected_clearly():
    omm, _, _ = water_box(method=app.PME, box_nm=2.0)
    nb = [f for f in omm.getForces() if isinstance(f, openmm.NonbondedForce)][0]
    nb.addGlobalParameter("lambda", 1.0)
    nb.addParticleParameterOffset("lambda", 0, 0.1, 0.0, 0.0)
    with pytest.raises(cg.UnsupportedForceError, match="parameter offsets"):
        cg.from_openmm(omm)


def test_input_checks_name_the_problem():
    omm, pos, box = water_box(method=app.PME, box_nm=2.0)
    system = cg.from_openmm(omm)
    bad = pos.copy()
    bad[7, 1] = np.nan
    with pytest.raises(cg.InputError, match="atom index 7"):
        system.energy(bad, box)
    with pytest.raises(cg.InputError, match="particles but"):
        system.energy(pos[:-3], box)
    no_box = cg.System(system.masses, system.terms, system.params, box=None)
    with pytest.raises(cg.InputError, match="no box"):
        no_box.energy(pos)
    with pytest.raises(cg.InputError, match="box is None"):
        no_box.energy_fn()(jnp.asarray(pos), None, system.params)


def test_cutoff_longer_than_half_the_box_is_rejected():
    omm, pos, box = water_box(method=app.PME, box_nm=2.0)
    system = cg.from_openmm(omm)
    with pytest.raises(cg.InputError, match="half the box"):
        system.energy(pos, box * 0.8)
