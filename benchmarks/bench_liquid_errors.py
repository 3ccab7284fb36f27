"""Is the statistical inefficiency of a short liquid run honest? Long NPT runs of Sage 2.2.1
TIP3P water (256 molecules, 298.15 K, 1 atm) in OpenMM, cut into the 20 ps and 40 ps pieces
the liquid fits sample; each piece's density and potential energy per molecule get a standard
error from pymbar's statistical inefficiency (``statistical_inefficiency(corrected=False)``)
and from chronograd's ``mean_std_error`` (bias-corrected g, the estimator the fits use), and
both are compared with the observed spread of the pieces' means.

Each run: its own lattice (``liquid_box`` seed 5 + k), minimization, 20 ps of NPT equilibration,
then ``--prod-ps`` of NPT (LangevinMiddle 2 fs, 1/ps, Monte Carlo barostat every 25 steps,
frames every 25 steps as the fits keep them), OpenMM CPU platform through OpenFF Interchange;
the runs go in parallel processes. Consecutive pieces of one run are nearly independent when
the correlation time (~7 ps for the density) is well below the piece (20-40 ps); slow
correlations between neighbours make the observed spread, if anything, slightly small.

Run: `python benchmarks/bench_liquid_errors.py [--runs 2] [--prod-ps 400]` (~20 min on 2 cores);
`--series out/bench-liquid-errors.npz` re-analyses saved series.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EVERY = 25


def long_run(k: int, prod_ps: float):
    """(density, potential energy per molecule) series of run k: lattice 5 + k, 20 ps
    equilibration (``bench_liquid_replicas.replica``)."""
    from bench_liquid_replicas import replica

    return replica(5 + k, 20.0, prod_ps, EVERY, integrator_seed=77 + 10 * k,
                   velocity_seed=78 + 10 * k)


def analyse(series: dict, piece_frames: int) -> list[dict]:
    """Per property: observed spread of the pieces' means against the RMS reported errors."""
    from chronograd.gradients import mean_std_error, statistical_inefficiency

    out = []
    for key in ("density", "potential"):
        pieces = np.concatenate([s[: len(s) // piece_frames * piece_frames]
                                 .reshape(-1, piece_frames) for s in series[key]])
        observed = float(np.std(pieces.mean(axis=1), ddof=1))
        g_old = np.array([statistical_inefficiency(p, corrected=False) for p in pieces])
        se_old = np.sqrt(g_old * pieces.var(axis=1, ddof=1) / piece_frames)
        new = [mean_std_error(p) for p in pieces]
        se_new = np.array([e["std_error"] for e in new])
        g_new = np.array([e["statistical_inefficiency"] for e in new])
        whole = [statistical_inefficiency(s) for s in series[key]]
        out.append({"property": key, "pieces": len(pieces), "observed": observed,
                    "spread_error": observed / np.sqrt(2 * (len(pieces) - 1)),
                    "g_old": float(g_old.mean()), "g_new": float(g_new.mean()),
                    "g_whole": float(np.mean(whole)),
                    "rms_old": float(np.sqrt(np.mean(se_old ** 2))),
                    "rms_new": float(np.sqrt(np.mean(se_new ** 2)))})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--prod-ps", type=float, default=400.0)
    ap.add_argument("--series", help="analyse these saved series instead of running")
    ap.add_argument("--save", default=str(ROOT / "out/bench-liquid-errors.npz"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.series:
        d = np.load(args.series)
        series = {k: list(d[k]) for k in ("density", "potential")}
    else:
        with ProcessPoolExecutor(args.runs) as pool:
            runs = list(pool.map(long_run, range(args.runs), [args.prod_ps] * args.runs))
        series = {"density": [r[0] for r in runs], "potential": [r[1] for r in runs]}
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.save, density=np.stack(series["density"]),
                 potential=np.stack(series["potential"]))
    minutes = (time.perf_counter() - t0) / 60
    n_frames = len(series["density"][0])
    lines = [
        "## Liquid standard errors: pymbar's g vs the corrected g (issue 20;"
        " `benchmarks/bench_liquid_errors.py`)",
        "",
        f"Command: `python benchmarks/bench_liquid_errors.py --runs {len(series['density'])}"
        f" --prod-ps {n_frames * EVERY * 0.002:g}`"
        + ("" if args.series else f" ({minutes:.0f} min)") + ".",
        machine_line(),
        "",
        f"Sage 2.2.1 TIP3P, 256 waters, 298.15 K, 1 atm, OpenMM CPU through Interchange;"
        f" {len(series['density'])} runs of {n_frames * EVERY * 0.002:g} ps after 20 ps, frames"
        " every 25 steps, cut into pieces of the fits' run lengths. Observed: SD of the"
        " pieces' means (± its own error). Reported: RMS standard error of a piece, with"
        " pymbar's g and with chronograd's bias-corrected g (`mean_std_error`). g in frames;"
        " 'whole run' is g of each full run (where the bias is negligible). Within 1.5"
        " either way is the issue's bar.",
        "",
        "| piece | property | pieces | observed SD | g pymbar / corrected / whole run |"
        " reported pymbar | observed / reported | reported corrected | observed / reported |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ps in (20, 40):
        for r in analyse(series, int(ps / 0.002) // EVERY):
            fmt = ".5f" if r["property"] == "density" else ".4f"
            lines.append(
                f"| {ps} ps | {r['property']} | {r['pieces']} |"
                f" {r['observed']:{fmt}} ± {r['spread_error']:{fmt}} |"
                f" {r['g_old']:.0f} / {r['g_new']:.0f} / {r['g_whole']:.0f} |"
                f" {r['rms_old']:{fmt}} | {r['observed'] / r['rms_old']:.2f} |"
                f" {r['rms_new']:{fmt}} | {r['observed'] / r['rms_new']:.2f} |")
    text = "\n".join(lines)
    if args.no_write:
        print(text)
    else:
        write_section("liquid-errors", text)


if __name__ == "__main__":
    main()
