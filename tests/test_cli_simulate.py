"""`chronograd simulate`: a run, a crash-and-resume that equals the uninterrupted run, and
one-line errors."""

import csv
import os
import subprocess
import sys

import mdtraj
import pytest

CLI = [sys.executable, "-m", "chronograd.cli.main", "simulate"]
BASE = ["--ff", "openff-2.2.1.offxml", "--smiles", "OCCO", "--timestep", "1fs",
        "--temperature", "300K", "--report-every", "50"]


def run(*args, cwd):
    env = {**os.environ, "CHRONOGRAD_CACHE_DIR": str(cwd / "xla-cache")}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env)


def rows(path):
    return list(csv.DictReader(open(path)))


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full = run(*BASE, "--steps", 200, "-o", "full.xtc", "--state-data", "full.csv",
               "--minimize", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    first = run(*BASE, "--steps", 100, "-o", "part.xtc", "--state-data", "part.csv",
                "--checkpoint", "part.chk", "--minimize", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    resumed = run(*BASE, "--steps", 200, "-o", "part.xtc", "--state-data", "part.csv",
                  "--checkpoint", "part.chk", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from part.chk at step 100" in resumed.stdout
    assert rows(tmp_path / "part.csv") == rows(tmp_path / "full.csv")
    traj = mdtraj.load(str(tmp_path / "part.xtc"), top=str(tmp_path / "full.pdb"))
    ref = mdtraj.load(str(tmp_path / "full.xtc"), top=str(tmp_path / "full.pdb"))
    assert traj.n_frames == 4 and (traj.xyz == ref.xyz).all()
    # the runs kept their compiled programs in the persistent cache named by the environment
    assert any((tmp_path / "xla-cache").iterdir())


@pytest.mark.parametrize("args, expect", [
    (["--timestep", "2xs"], "unknown time unit 'xs'"),
    (["--pressure", "1bar"], "--pressure needs a periodic box"),
    (["--report-every", "30"], "must be a multiple of --report-every"),
    (["--integrator", "leapfrog"], "unknown integrator 'leapfrog'"),
    (["--precision", "half"], "--precision must be 'double' or 'mixed'"),
])
def test_bad_input_is_one_line(tmp_path, args, expect):
    res = run(*BASE, "--steps", 100, "-o", "x.dcd", *args, cwd=tmp_path)
    assert res.returncode == 1
    assert expect in res.stderr and "Traceback" not in res.stderr
