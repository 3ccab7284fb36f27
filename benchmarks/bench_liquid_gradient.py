"""Ensemble gradient vs finite differences of re-simulated averages, liquid water, long runs:
d<U>/dsigma and d<density>/dsigma for the water-oxygen sigma of Sage 2.2.1 TIP3P (rigid,
PME, NPT 300 K / 1 bar), the slow test ``tests/test_gradients_liquid.py`` with longer runs,
cut into pieces to check the reported standard errors against the pieces' spread.

Setup as the test: ``water_box(2.0)`` (~260 waters), minimization, 10 ps NPT at Sage's sigma
(key 0), then per side sigma x (1 -+ 1 %) from that state with the same key (``--seed``):
``--equil-ps`` of equilibration and ``--prod-ps`` of production (BAOAB Langevin 2 fs, 1/ps,
Monte Carlo barostat every 25 steps, a frame every 0.1 ps). The two sides run in parallel
processes. Per piece of ``--piece-ps`` and for the whole run: the central difference of the
two sides' means (errors by ``mean_std_error``) and the average of the two sides' ensemble
gradients (``ensemble_gradient``'s delta-method errors).

Run: `python benchmarks/bench_liquid_gradient.py [--prod-ps 200]` (~30 min on 2 cores);
`--series out/bench-liquid-gradient.npz` re-analyses saved per-frame series.
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
T, P, REL_STEP, EVERY, DT = 300.0, 1.0, 0.01, 50, 0.002


def _setup():
    import chronograd as cg
    from chronograd.gradients import flat_params
    from chronograd.topology.boxes import water_box

    ff = cg.ForceField("openff-2.2.1.offxml")
    mols, pos, box = water_box(2.0)
    system = ff.create_system(mols, box=box)
    wrt = ff.select(ids=["n-tip3p-O"], attributes={"sigma"})
    return system, wrt, flat_params(ff.params, wrt), pos, box


def side(sign: int, equil_ps: float, prod_ps: float, seed: int) -> dict:
    """One side's per-frame series: U, dU/dsigma, density (frames in sampling order)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import chronograd as cg
    from chronograd import observables as obs
    from chronograd.dynamics import langevin
    from chronograd.dynamics.barostat import monte_carlo_barostat
    from chronograd.dynamics.reporters import ReservoirReporter
    from chronograd.gradients import flat_params
    from chronograd.gradients.ensemble import _PerFrame

    system, wrt, fp, pos, box = _setup()
    x = cg.minimize(system, pos, box, tolerance=50.0).positions
    integ = langevin(system, timestep=DT, temperature=T, friction=1.0)
    baro = monte_carlo_barostat(integ, pressure=P, temperature=T, frequency=25)
    start = cg.simulate(integ, integ.init(x, key=jax.random.key(0), temperature=T),
                        int(10 / DT), barostat=baro)
    phi = fp.phi0 * (1 + sign * REL_STEP)
    params = fp.params(phi)
    s = start._replace(key=jax.random.key(seed))
    s = cg.simulate(integ, s, int(equil_ps / DT), params=params, barostat=baro)
    n = int(prod_ps / DT)
    rep = ReservoirReporter(n // EVERY, every=EVERY)
    cg.simulate(integ, s, n, params=params, barostat=baro, reporters=[rep])
    order = np.argsort(rep.steps)
    frames, boxes = np.stack(rep.frames)[order], np.stack(rep.boxes)[order]
    fps = flat_params(params, wrt)
    pf, density = _PerFrame(system, fps), obs.density(system.masses)
    u, du, rho = [], [], []
    for xf, bf in zip(frames, boxes, strict=True):
        xf, bf = pf.prepare(xf, bf)
        e, g = pf.energy_and_grad(xf, bf, fps.phi0, pf.neighbors(xf, bf))
        u.append(float(e))
        du.append(float(g[0]))
        rho.append(float(density(xf, bf, params)))
    return {"U": np.array(u), "dU": np.array(du), "rho": np.array(rho),
            "sigma": float(phi[0])}


def estimates(series: dict, lo: int, hi: int) -> dict:
    """Central difference and averaged ensemble gradient over frames [lo, hi)."""
    from chronograd.gradients import mean_std_error
    from chronograd.gradients.ensemble import _covariance_gradient
    from chronograd.units import BOLTZMANN

    beta = 1.0 / (BOLTZMANN * T)
    h2 = series[1]["sigma"] - series[-1]["sigma"]
    out = {}
    for key in ("U", "rho"):
        means, grads = {}, {}
        for sign in (-1, 1):
            s = series[sign]
            o, du = s[key][lo:hi], s["dU"][lo:hi]
            e = mean_std_error(o)
            means[sign] = (e["value"], e["std_error"])
            do = du if key == "U" else np.zeros_like(du)
            g, ge = _covariance_gradient(o[:, None], do[:, None, None], du[:, None], beta)
            grads[sign] = (float(g[0, 0]), float(ge[0, 0]))
        fd = (means[1][0] - means[-1][0]) / h2
        fd_err = np.hypot(means[1][1], means[-1][1]) / h2
        ens = 0.5 * (grads[1][0] + grads[-1][0])
        ens_err = 0.5 * np.hypot(grads[1][1], grads[-1][1])
        out[key] = {"fd": fd, "fd_err": fd_err, "ens": ens, "ens_err": ens_err,
                    "sides": (grads[-1][0], grads[1][0]),
                    "z": (ens - fd) / np.hypot(ens_err, fd_err)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--equil-ps", type=float, default=20.0)
    ap.add_argument("--prod-ps", type=float, default=200.0)
    ap.add_argument("--piece-ps", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--series", help="analyse these saved series instead of running")
    ap.add_argument("--save", default=str(ROOT / "out/bench-liquid-gradient.npz"))
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.series:
        d = np.load(args.series)
        series = {sign: {k: d[f"{k}_{sign}"] for k in ("U", "dU", "rho")}
                  | {"sigma": float(d[f"sigma_{sign}"])} for sign in (-1, 1)}
    else:
        with ProcessPoolExecutor(2) as pool:
            res = list(pool.map(side, (-1, 1), [args.equil_ps] * 2, [args.prod_ps] * 2,
                                [args.seed] * 2))
        series = dict(zip((-1, 1), res, strict=True))
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.save, **{f"{k}_{sign}": series[sign][k] for sign in (-1, 1)
                               for k in ("U", "dU", "rho", "sigma")})
    minutes = (time.perf_counter() - t0) / 60
    n = len(series[1]["U"])
    prod_ps = n * EVERY * DT
    per = int(round(args.piece_ps / (EVERY * DT)))
    pieces = [estimates(series, k * per, (k + 1) * per) for k in range(n // per)]
    whole = estimates(series, 0, n)
    lines = [
        "## Ensemble gradient vs re-simulated finite differences, liquid water, long runs"
        " (issue 20; `benchmarks/bench_liquid_gradient.py`)",
        "",
        f"Command: `python benchmarks/bench_liquid_gradient.py --equil-ps {args.equil_ps:g}"
        f" --prod-ps {prod_ps:g} --piece-ps {args.piece_ps:g} --seed {args.seed}`"
        + (f" (re-analysed from the saved series {Path(args.series).name})" if args.series
           else f" ({minutes:.0f} min)") + ".",
        machine_line(),
        "",
        "Sage 2.2.1 TIP3P, ~260 rigid waters, PME, NPT 300 K / 1 bar; water-oxygen sigma"
        " x (1 -+ 1 %), matched keys; d/dsigma per nm (U: kJ/mol/nm, density: g/mL/nm)."
        " 'ensemble' is the mean of the two sides' ensemble gradients (the sides in"
        " brackets), 'finite difference' the central difference of the sides' means; z ="
        " (ensemble - finite difference) / combined standard error. The pieces' spread"
        " (SD over pieces) against their RMS reported error checks the errors.",
        "",
        "| frames | observable | ensemble (sides) | finite difference | z |",
        "|---|---|---|---|---|",
    ]
    rows = [(f"piece {k + 1} ({args.piece_ps:g} ps)", p) for k, p in enumerate(pieces)]
    for label, est in [*rows, (f"whole ({prod_ps:g} ps)", whole)]:
        for key in ("U", "rho"):
            r = est[key]
            fmt = ".4g"
            lines.append(
                f"| {label} | {key} | {r['ens']:{fmt}} ± {r['ens_err']:.2g} ({r['sides'][0]:{fmt}},"
                f" {r['sides'][1]:{fmt}}) | {r['fd']:{fmt}} ± {r['fd_err']:.2g} |"
                f" {r['z']:+.2f} |")
    lines += ["", "| observable | estimator | SD over pieces | RMS reported error |"
              " SD / reported |", "|---|---|---|---|---|"]
    for key in ("U", "rho"):
        for name, v, e in (("ensemble", "ens", "ens_err"), ("finite difference", "fd",
                                                              "fd_err")):
            sd = float(np.std([p[key][v] for p in pieces], ddof=1))
            rep = float(np.sqrt(np.mean([p[key][e] ** 2 for p in pieces])))
            lines.append(f"| {key} | {name} | {sd:.3g} | {rep:.3g} | {sd / rep:.2f} |")
    text = "\n".join(lines)
    if args.no_write:
        print(text)
    else:
        write_section("liquid-gradient", text)


if __name__ == "__main__":
    main()
