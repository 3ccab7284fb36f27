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
    (["--pme-grid", "fast"], "--pme-grid must be one of fft, exact, got 'fast'"),
])
def test_bad_input_is_one_line(tmp_path, args, expect):
    res = run(*BASE, "--steps", 100, "-o", "x.dcd", *args, cwd=tmp_path)
    assert res.returncode == 1
    assert expect in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("status", ["max_iterations", "stalled", "non_finite"])
def test_unconverged_minimization_is_reported(tmp_path, monkeypatch, status):
    """A minimization that stops at its iteration limit prints a warning before dynamics; a
    non-finite one stops the run with one line (issue 19's ibuprofen run went on silently)."""
    import importlib

    import chronograd.dynamics.runner as runner
    from chronograd.cli import simulate_command as sc
    from chronograd.errors import InputError

    minimize_module = importlib.import_module("chronograd.minimize")
    system, pos, box, mols = sc.build_from_force_field("openff-2.2.1.offxml", None, "OCCO",
                                                       None, None, None, None)
    energy = float("nan") if status == "non_finite" else -10.0
    monkeypatch.setattr(minimize_module, "minimize", lambda s, x, b, **kw: minimize_module.
                        MinimizeResult(x, energy, 42.0, 80.0, 10000, status))
    monkeypatch.setattr(runner, "simulate", lambda integ, state, steps, **kw: state)
    lines = []
    opts = sc.check_options(timestep="1fs", temperature="300K", pressure=None, friction=1.0,
                            steps=10, report_every=5, integrator="langevin",
                            output=tmp_path / "x.dcd", state_data=None, checkpoint=None,
                            resume=False, seed=0, solvate=None, liquid=None, density=None)
    run = dict(system=system, positions=pos, box=box, molecules=mols, minimize_first=True,
               echo=lines.append, **opts)
    if status == "non_finite":
        with pytest.raises(InputError, match="non-finite energy"):
            sc.run_simulation(**run)
        return
    sc.run_simulation(**run)
    warning = [w for w in lines if w.startswith("warning: minimization stopped")]
    assert warning and "RMS force of 42" in warning[0]
    why = {"max_iterations": "at its iteration limit",
           "stalled": "short of its tolerance (no further decrease found)"}[status]
    assert why in warning[0]


def test_pme_grid_is_rounded_for_ffts_unless_exact_is_asked():
    """--pme-grid fft (the default) runs the grid OpenMM's CPU platform runs and says so;
    exact keeps the derived one; a system without PME is left alone, silently."""
    import openmm.app as app
    from reference_systems import water_box

    import chronograd as cg
    from chronograd.cli import simulate_command as sc

    system = cg.from_openmm(water_box(method=app.PME, box_nm=3.2)[0])
    lines = []
    assert sc.choose_pme_grid(system, "exact", lines.append) is system and not lines
    fast = sc.choose_pme_grid(system, "fft", lines.append)
    assert fast.nonbonded.grid == (30, 30, 30)
    assert lines == ["PME grid 29x29x29 -> 30x30x30 (FFT-friendly sizes, as OpenMM's CPU"
                     " platform runs; --pme-grid exact keeps 29x29x29)"]
    cutoff = cg.from_openmm(water_box(method=app.CutoffPeriodic, box_nm=3.2)[0])
    assert sc.choose_pme_grid(cutoff, "fft", lines.append) is cutoff and len(lines) == 1
