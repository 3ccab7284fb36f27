"""Bad input through the ``chronograd`` command: every case of the corpus gets one clear line and
a non-zero exit code and leaves nothing behind; planted checkpoints run no code; a blow-up
writes the last good state; --debug shows the traceback; simulate takes the molecule as an
argument."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bad_input_corpus import (
    CASES,
    MARKER,
    SAGE,
    fit_resume,
    md_checkpoint,
    normalized,
    object_array_npz,
    planted_pickle,
    run_case,
    sdf,
    table_row,
)
from cli_helpers import run_cli, tree

DOCS = Path(__file__).resolve().parent.parent / "docs" / "bad-input.md"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_corpus(case, tmp_path):
    before = None

    def build(d):
        nonlocal before
        argv = case.build(d)
        before = tree(d)
        return argv

    _, result = run_case(type(case)(case.id, case.tried, build, case.expect, case.code),
                         tmp_path)
    message = result.one_line_error()
    assert result.code == case.code, (result.code, message)
    assert case.expect in message, message
    assert tree(tmp_path) == before, "a refused input left files behind"
    assert not (tmp_path / MARKER).exists()
    assert table_row(case, normalized(message, tmp_path)) in DOCS.read_text().splitlines(), (
        "docs/bad-input.md is stale: python tests/bad_input_corpus.py > docs/bad-input.md")


def test_docs_table_lists_only_corpus_cases():
    ids = {c.id for c in CASES}
    rows = [line.split("|")[1].strip().strip("`") for line in DOCS.read_text().splitlines()
            if line.startswith("| `")]
    assert sorted(rows) == sorted(ids)


# ---- no code from data files ---------------------------------------------------------------------

def test_the_planted_payload_runs_code_when_unpickled(tmp_path, monkeypatch):
    """The payload of the planted checkpoints is live: plain pickle.loads runs it (so the tests
    below, where chronograd must not run it, can fail)."""
    monkeypatch.chdir(tmp_path)
    pickle.loads(planted_pickle())
    assert (tmp_path / MARKER).is_dir()


@pytest.mark.parametrize("plant", ["checkpoint.pkl", "checkpoint.npz as pickle",
                                   "checkpoint.npz with object array"])
def test_fit_resume_runs_no_code_from_a_planted_checkpoint(tmp_path, plant):
    def make(out, cfg):
        if plant == "checkpoint.pkl":
            (out / "checkpoint.pkl").write_bytes(planted_pickle())
        elif plant == "checkpoint.npz as pickle":
            (out / "checkpoint.npz").write_bytes(planted_pickle())
        else:
            object_array_npz(out / "checkpoint.npz")

    argv = fit_resume(tmp_path, make)
    result = run_cli(*argv, cwd=tmp_path)
    assert result.code == 1 and "pickl" in result.one_line_error()
    assert not (tmp_path / MARKER).exists()


def test_simulate_resume_runs_no_code_from_a_planted_checkpoint(tmp_path):
    argv = md_checkpoint(tmp_path, lambda p: p.write_bytes(planted_pickle()))
    result = run_cli(*argv, cwd=tmp_path)
    assert "pickl" in result.one_line_error()
    assert not (tmp_path / MARKER).exists()


def test_no_reader_allows_pickle():
    """No np.load with allow_pickle=True and no pickle import anywhere in the package, except
    the restricted reader of PyTorch archives (NAGL model files), whose Unpickler resolves a
    fixed list of names to stand-ins and never calls pickle.load(s)."""
    root = Path(__file__).resolve().parent.parent / "chronograd"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "allow_pickle=True" not in text, path
        if path.name == "torch_archive.py":
            assert "def find_class" in text and "pickle.load" not in text, path
            continue
        assert "import pickle" not in text, path
        if "np.load(" in text:
            assert path.name == "archive.py", f"{path}: read .npz files through read_arrays"


# ---- behaviour around errors -------------------------------------------------------------------

def test_blow_up_writes_the_last_good_state_and_names_it(tmp_path):
    """A run that explodes (ethanol with flexible bonds at 10,000 K and a 2.6 fs step, which
    blows up after ~180 steps) stops with one line that names the last good state on disk,
    which loads as a checkpoint of this system; the frames before it are kept."""
    from chronograd.dynamics import langevin
    from chronograd.dynamics.reporters import load_checkpoint
    from chronograd.forcefield import ForceField
    from chronograd.topology import Molecule

    ff = "openff_unconstrained-2.2.1.offxml"
    result = run_cli("simulate", "--ff", ff, "--smiles", "CCO", "--charges", "gasteiger",
                     "--steps", "1000", "--report-every", "20", "--timestep", "2.6fs",
                     "--temperature", "10000K", "--minimize", "-o", "run.xtc", cwd=tmp_path)
    message = result.one_line_error()
    assert "the simulation blew up at step" in message
    assert "run.last_good.chk" in message and "--resume" in message
    system = ForceField(ff).create_system(Molecule.from_smiles("CCO"), charges="gasteiger")
    state = load_checkpoint(tmp_path / "run.last_good.chk",
                            langevin(system, timestep=0.0026, temperature=1e4))
    bad_step = int(message.split("blew up at step ")[1].split(":")[0])
    assert 0 < int(state.step) < bad_step and int(state.step) % 20 == 0
    assert np.all(np.isfinite(np.asarray(state.positions)))
    import mdtraj

    frames = mdtraj.load(str(tmp_path / "run.xtc"), top=str(tmp_path / "run.pdb"))
    assert frames.n_frames == int(state.step) // 20  # the frames so far are kept


def test_debug_shows_the_traceback(tmp_path):
    plain = run_cli("parameterize", "--smiles", "", "--ff", SAGE, "-o", "x.json", cwd=tmp_path)
    assert "Traceback" not in plain.err
    debug = run_cli("--debug", "parameterize", "--smiles", "", "--ff", SAGE, "-o", "x.json",
                    cwd=tmp_path)
    assert debug.code == 1
    assert "Traceback (most recent call last)" in debug.err and "InputError" in debug.err
    assert debug.err.strip().splitlines()[-1] == "error: empty SMILES ''; give a molecule," \
        " e.g. 'CCO'"


def test_unexpected_exception_is_one_line_with_a_debug_hint(tmp_path, monkeypatch):
    from chronograd.topology import molecule

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(molecule.Molecule, "from_smiles", broken)
    result = run_cli("parameterize", "--smiles", "CCO", "--ff", SAGE, "-o", "x.json",
                     cwd=tmp_path)
    message = result.one_line_error()
    assert message.startswith("unexpected ZeroDivisionError: boom")
    assert message.endswith("run with --debug for the traceback")


def test_real_entry_point_one_line_and_exit_code(tmp_path):
    """The installed command (a new process) behaves like main(): one line, exit code 1."""
    res = subprocess.run([sys.executable, "-m", "chronograd.cli.main", "simulate", "--ff",
                          SAGE, "--smiles", "CCO", "--steps", "0", "-o", "x.dcd"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr == "error: --steps must be at least 1, got 0\n"
    assert os.listdir(tmp_path) == []


# ---- simulate takes the molecule as energy does ------------------------------------------------

def test_simulate_takes_the_molecule_file_positionally(tmp_path):
    name = sdf(tmp_path)
    args = ["--steps", "20", "--report-every", "10", "--timestep", "1fs", "--charges",
            "from-file", "--seed", "3"]
    positional = run_cli("simulate", "--ff", SAGE, name, *args, "-o", "a.xtc", cwd=tmp_path)
    assert positional.code == 0, positional.err
    option = run_cli("simulate", "--ff", SAGE, "--molecule", name, *args, "-o", "b.xtc",
                     cwd=tmp_path)
    assert option.code == 0, option.err
    import mdtraj

    a = mdtraj.load(str(tmp_path / "a.xtc"), top=str(tmp_path / "a.pdb"))
    b = mdtraj.load(str(tmp_path / "b.xtc"), top=str(tmp_path / "b.pdb"))
    assert a.n_frames == 2 and np.array_equal(a.xyz, b.xyz)
