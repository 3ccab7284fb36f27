"""A drug-like molecule in water from the command line, end to end, against OpenMM (issue 19 e).

``chronograd simulate --ff openff-2.2.1.offxml --smiles <ibuprofen> --solvate P --minimize
--steps 5000 --timestep 2fs`` (10 ps of LangevinMiddle dynamics after minimization) timed as
a user runs it: the whole process, from a cold compilation cache and again from a warm one.
OpenMM runs the same system (chronograd's system, built the same way the command builds it
and exported with ``chronograd.to_openmm``), CPU platform, from the same starting positions:
LocalEnergyMinimizer (tolerance 10 kJ/mol/nm) and 5000 LangevinMiddle steps, with Context
creation included, before and after chronograd's runs (ratios to the faster). Writes the
"cli-end-to-end" section of RESULTS.md.

Run: ``python benchmarks/bench_cli_end_to_end.py`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

IBUPROFEN = "CC(C)Cc1ccc(cc1)C(C)C(=O)O"
FF = "openff-2.2.1.offxml"


def cli_run(workdir: Path, cache: Path, steps: int, padding: float, precision: str):
    cmd = [sys.executable, "-m", "chronograd.cli.main", "simulate", "--ff", FF, "--smiles",
           IBUPROFEN, "--solvate", str(padding), "--minimize", "--steps", str(steps),
           "--timestep", "2fs", "--temperature", "300K", "--report-every", "500",
           "--precision", precision, "-o", "run.dcd"]
    env = {**os.environ, "CHRONOGRAD_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"chronograd simulate failed:\n{res.stderr}")
    minimized = [ln for ln in res.stdout.splitlines()
                 if ln.startswith(("minimized", "warning", "PME grid"))]
    return wall, minimized


def openmm_run(steps: int, padding: float):
    import openmm
    import openmm.unit as u

    import chronograd as cg
    from chronograd.cli.simulate_command import build_from_force_field

    t0 = time.perf_counter()
    system, pos, box, _ = build_from_force_field(FF, None, IBUPROFEN, None, padding, None,
                                                 None)
    t_build = time.perf_counter() - t0
    omm = cg.to_openmm(system)
    t0 = time.perf_counter()
    integ = openmm.LangevinMiddleIntegrator(300 * u.kelvin, 1.0 / u.picosecond,
                                            0.002 * u.picoseconds)
    ctx = openmm.Context(omm, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*[openmm.Vec3(*v) for v in np.asarray(box)])
    ctx.setPositions(np.asarray(pos))
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0)
    e_min = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(u.kilojoule_per_mole)
    t_min = time.perf_counter() - t0
    ctx.setVelocitiesToTemperature(300 * u.kelvin, 0)
    t1 = time.perf_counter()
    integ.step(steps)
    ctx.getState(getEnergy=True)
    t_md = time.perf_counter() - t1
    return {"atoms": system.n_atoms, "build": t_build, "minimize": t_min, "md": t_md,
            "total": t_min + t_md, "e_min": e_min}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--padding", type=float, default=1.0, help="--solvate padding, nm")
    args = ap.parse_args()
    first = openmm_run(args.steps, args.padding)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "xla-cache"
        for precision in ("double", "mixed"):
            for label in ("cold cache", "warm cache"):
                if label == "cold cache" and precision == "mixed":
                    label = "cold cache (mixed programs)"
                work = Path(tmp) / f"{precision}-{label.split()[0]}"
                work.mkdir()
                wall, minimized = cli_run(work, cache, args.steps, args.padding, precision)
                rows.append((precision, label, wall, minimized))
    # OpenMM again after chronograd's runs: this machine's speed drifts over a quarter hour,
    # so the ratios are to the faster of the two runs that bracket chronograd's
    last = openmm_run(args.steps, args.padding)
    omm = min(first, last, key=lambda r: r["total"])
    ps = args.steps * 0.002
    body = [
        f"## CLI end to end: ibuprofen in water, minimize + {ps:g} ps (issue 19 e;"
        " `benchmarks/bench_cli_end_to_end.py`)",
        "",
        machine_line(),
        "",
        f"`chronograd simulate --ff {FF} --smiles '{IBUPROFEN}' --solvate {args.padding}"
        f" --minimize --steps {args.steps} --timestep 2fs` ({omm['atoms']} atoms), timed as"
        " one process from start to exit; OpenMM CPU on the exported system from the same"
        " positions: Context creation, LocalEnergyMinimizer (tolerance 10), then"
        f" {args.steps} LangevinMiddle steps, before and after chronograd's runs; ratios to"
        " the faster of the two. One run of the script.",
        "",
        "| run | wall s | / OpenMM |",
        "|---|---|---|",
    ]
    for when, r in (("before", first), ("after", last)):
        body.append(f"| OpenMM CPU, {when}: minimize + MD ({r['minimize']:.1f} + {r['md']:.1f}"
                    f" s; building chronograd's system for it took {r['build']:.1f} s more) |"
                    f" {r['total']:.1f} | {r['total'] / omm['total']:.2f} |")
    for precision, label, wall, _ in rows:
        body.append(f"| chronograd CLI, {precision}, {label} | {wall:.1f} |"
                    f" {wall / omm['total']:.1f} |")
    body += ["", f"OpenMM minimized energy: {first['e_min']:.1f} and {last['e_min']:.1f}"
             " kJ/mol; chronograd's runs:"
             f" {'; '.join(' '.join(m) for *_, m in rows)}."]
    write_section("cli-end-to-end", "\n".join(body))


if __name__ == "__main__":
    main()
