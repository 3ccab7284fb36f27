"""The `chronograd energy` command: output formats and one-line errors with exit code != 0."""

import json
import subprocess
import sys

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as u
import pytest
from reference_systems import openmm_energy_forces, water_box, water_box_topology

CLI = [sys.executable, "-m", "chronograd.cli.main", "energy"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    omm, pos, box = water_box(method=app.PME, box_nm=2.0)
    top, _, _ = water_box_topology(2.0)
    (d / "system.xml").write_text(openmm.XmlSerializer.serialize(omm))
    with open(d / "water.pdb", "w") as fh:
        app.PDBFile.writeFile(top, pos * u.nanometer, fh)
    return d, omm


def run(*args):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)


def test_json_and_forces(files):
    d, omm = files
    res = run("--openmm", d / "system.xml", "--positions", d / "water.pdb", "--json",
              "--forces", d / "f.npy")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["units"] == "kJ/mol"
    assert set(out["terms"]) == {"harmonic_bond", "harmonic_angle", "lennard_jones", "coulomb"}
    assert out["total"] == pytest.approx(sum(out["terms"].values()), rel=1e-12)
    pdb = app.PDBFile(str(d / "water.pdb"))
    pos = pdb.getPositions(asNumpy=True).value_in_unit(u.nanometer)
    box = np.array(pdb.topology.getPeriodicBoxVectors().value_in_unit(u.nanometer))
    e_ref, f_ref = openmm_energy_forces(omm, pos, box)
    assert out["total"] == pytest.approx(e_ref, rel=1e-6)
    forces = np.load(d / "f.npy")
    assert forces.shape == (omm.getNumParticles(), 3)
    assert np.abs(forces - f_ref).max() < 1e-3


def test_table_output(files):
    d, _ = files
    res = run("--openmm", d / "system.xml", "--positions", d / "water.pdb")
    assert res.returncode == 0
    assert "total" in res.stdout and "kJ/mol" in res.stdout


def _bad_pdb(d, name, edit):
    lines = (d / "water.pdb").read_text().splitlines()
    lines = edit(lines)
    (d / name).write_text("\n".join(lines) + "\n")
    return d / name


def _atom_line(lines, k):
    return [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))][k]


def _set_x(lines, k, text):
    i = _atom_line(lines, k)
    lines[i] = lines[i][:30] + text.rjust(8) + lines[i][38:]
    return lines


@pytest.mark.parametrize(
    "case, expect",
    [
        ("malformed_xml", "line 3"),
        ("not_a_system", "expected <System>"),
        ("bad_coordinate", "atom index 4"),
        ("nan_coordinate", "not finite"),
        ("count_mismatch", "particles but"),
        ("no_cryst1", "CRYST1"),
        ("unsupported_force", "CustomGBForce"),
        ("missing_file", "no such file"),
    ],
)
def test_bad_input_one_clear_message(files, case, expect):
    d, omm = files
    xml, pdb = d / "system.xml", d / "water.pdb"
    if case == "malformed_xml":
        xml = d / "bad.xml"
        xml.write_text('<?xml version="1.0"?>\n<System>\n<Particles><Particle mass="1"</Particles>')
    elif case == "not_a_system":
        xml = d / "force.xml"
        xml.write_text(openmm.XmlSerializer.serialize(openmm.HarmonicBondForce()))
    elif case == "bad_coordinate":
        pdb = _bad_pdb(d, "badc.pdb", lambda ls: _set_x(ls, 4, "1.2.3"))
    elif case == "nan_coordinate":
        pdb = _bad_pdb(d, "nan.pdb", lambda ls: _set_x(ls, 2, "nan"))
    elif case == "count_mismatch":
        pdb = _bad_pdb(d, "short.pdb", lambda ls: [ls[i] for i in range(len(ls))
                                                   if i != _atom_line(ls, 0)])
    elif case == "no_cryst1":
        pdb = _bad_pdb(d, "nobox.pdb", lambda ls: [x for x in ls if not x.startswith("CRYST1")])
    elif case == "unsupported_force":
        s = openmm.XmlSerializer.clone(omm)
        s.addForce(openmm.CustomGBForce())
        xml = d / "custom.xml"
        xml.write_text(openmm.XmlSerializer.serialize(s))
    elif case == "missing_file":
        xml = d / "nope.xml"
    res = run("--openmm", xml, "--positions", pdb)
    assert res.returncode != 0
    assert expect in res.stderr, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stderr.strip().count("\n") == 0  # one message


def test_python_dash_m_chronograd_is_the_command():
    res = subprocess.run([sys.executable, "-m", "chronograd", "energy", "--openmm",
                          "missing.xml"], capture_output=True, text=True)
    assert res.returncode == 1 and "--positions FILE.pdb" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
