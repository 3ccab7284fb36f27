"""Gradient estimators, measured in one run on aspirin with Sage 2.2.1 (vacuum, AM1-BCC
charges, bonds to H constrained, Langevin at 300 K, 2 fs, 1/ps):

1. forward mode: cost per step per tangent relative to a plain step (P tangents batched);
   reverse mode per step for all parameters;
2. memory at T = 10^4 steps: plain reverse vs checkpointed reverse vs forward mode (XLA's
   compiled buffer sizes: temporaries + arguments + outputs) and their wall times;
3. the ensemble gradient of <Rg> for all Sage parameters from 400 frames vs central finite
   differences of re-simulated averages (2 runs of the same length per parameter; the cost
   of one run is measured and multiplied, since running them all would take hours);
4. gradient error vs horizon: forward-mode gradients of the time-averaged Rg (4 torsion
   barriers) over horizons of 0.02-4 ps from 8 equilibrium starts, against the ensemble
   gradient of <Rg> from a long run; with the tangent growth. Plot: docs/img/gradient_horizon.png.
Run: `python benchmarks/bench_gradients.py` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, median_time, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd import observables as obs  # noqa: E402
from chronograd.dynamics import langevin  # noqa: E402
from chronograd.dynamics.reporters import ReservoirReporter  # noqa: E402
from chronograd.gradients import ensemble_gradient, flat_params  # noqa: E402
from chronograd.gradients.common import compiled_memory_bytes  # noqa: E402
from chronograd.gradients.trajectory import _forward, _Problem  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T = 300.0


def setup():
    ff = cg.ForceField("openff-2.2.1.offxml")
    mol = cg.Molecule.from_sdf(ROOT / "data" / "molecules" / "aspirin.sdf")[0]
    system = ff.create_system(mol, charges="am1bcc")
    integ = langevin(system, timestep=0.002, temperature=T, friction=1.0)
    state = cg.simulate(integ, integ.init(mol.positions, key=jax.random.key(0),
                                          temperature=T), 2000)
    return ff, system, integ, state


def forward_cost(ff, system, integ, state, rg, n=200):
    params = ff.params

    @jax.jit
    def plain(s):
        return jax.lax.scan(lambda q, _: (integ.step(q, params), None), s, None, length=n)[0]

    t_plain = median_time(lambda: plain(state).positions, 5) / n
    torsions = np.flatnonzero(np.asarray(flat_params(ff.params, ff.select(
        attributes={"k"})).flat) != 0)
    rows = []
    for p in (1, 4, 16, 64):
        wrt = torsions[:p]
        problem, fp = _Problem(integ, rg, n, 1, "time"), flat_params(params, wrt)
        f = jax.jit(lambda ph, pr=problem, fp=fp: _forward(pr, None, None, ph, state, fp)[1])
        phi = fp.phi0
        f(phi).block_until_ready()
        t = median_time(lambda f=f, phi=phi: f(phi), 3) / n
        rows.append((p, t, t / t_plain, t / t_plain / p))
    problem, fp = _Problem(integ, rg, n, 1, "time"), flat_params(params, None)
    g = jax.jit(jax.grad(lambda ph: problem.loss(ph, state, fp)[0]))
    phi = fp.phi0
    g(phi).block_until_ready()
    t_rev = median_time(lambda: g(phi), 3) / n
    return t_plain, rows, t_rev, int(phi.shape[0])


def memory_at(ff, integ, state, rg, n=10_000):
    out = []
    wrt = ff.select(attributes={"k"}, ids=["t1", "t2", "t3", "t4"])
    problem, fp = _Problem(integ, rg, n, 1, "time"), flat_params(ff.params, None)
    seg = int(round(np.sqrt(n)))
    fns = {"plain reverse": jax.value_and_grad(lambda ph: problem.loss(ph, state, fp)[0]),
           f"checkpointed reverse (segments of {seg})":
           jax.value_and_grad(lambda ph: problem.checkpointed_loss(ph, state, fp, seg)[0])}
    for name, fn in fns.items():
        compiled = jax.jit(fn).lower(fp.phi0).compile()
        t = median_time(lambda c=compiled: c(fp.phi0), 1)
        out.append((name + f", all {fp.phi0.shape[0]} parameters",
                    compiled_memory_bytes(compiled), t))
    fp4 = flat_params(ff.params, wrt)
    compiled = jax.jit(lambda ph: _forward(problem, None, None, ph, state, fp4)[:2]).lower(
        fp4.phi0).compile()
    t = median_time(lambda: compiled(fp4.phi0), 1)
    out.append((f"forward, {fp4.phi0.shape[0]} tangents", compiled_memory_bytes(compiled), t))
    return out


def ensemble_vs_fd(ff, system, integ, state, rg):
    rep = ReservoirReporter(400, every=50)
    t = time.perf_counter()
    cg.simulate(integ, state, 20_000, reporters=[rep])
    t_sim = time.perf_counter() - t
    frames = np.stack(rep.frames)[np.argsort(rep.steps)]
    ensemble_gradient(system, frames[:4], rg, temperature=T)  # compile
    t = time.perf_counter()
    r = ensemble_gradient(system, frames, rg, temperature=T)
    t_ens = time.perf_counter() - t
    used = int(np.sum(r.std_error > 0))
    return t_sim, t_ens, r, used, frames


def horizon_study(ff, integ, frames, rg, reference, wrt, horizons_steps, n_starts=8):
    every = 1
    results = []
    starts = [integ.init(frames[k], key=jax.random.key(100 + k), temperature=T)
              for k in np.linspace(0, len(frames) - 1, n_starts).astype(int)]
    for n in horizons_steps:
        def grad_of(s, n=n):
            problem, fp = _Problem(integ, rg, n, every, "time"), flat_params(ff.params, wrt)
            _, g, norms, _ = _forward(problem, None, None, fp.phi0, s, fp)
            return g, norms[-1] / jnp.maximum(norms[max(0, n // 10 - 1)], 1e-300)

        f = jax.jit(grad_of)
        gs, growth = zip(*[f(s) for s in starts], strict=True)
        gs = np.stack(gs)
        err = np.sqrt(np.mean(np.sum((gs - reference) ** 2, axis=1))) / np.linalg.norm(reference)
        spread = np.sqrt(np.mean(np.sum((gs - gs.mean(0)) ** 2, axis=1))) / np.linalg.norm(
            reference)
        results.append((n * integ.timestep, err, spread, float(np.median(growth))))
    return results


def main():
    t0 = time.perf_counter()
    ff, system, integ, state = setup()
    rg = obs.radius_of_gyration(system.masses)
    t_plain, rows, t_rev, n_theta = forward_cost(ff, system, integ, state, rg)
    mem = memory_at(ff, integ, state, rg)
    t_sim, t_ens, r, used, frames = ensemble_vs_fd(ff, system, integ, state, rg)
    # reference for the horizon study: the ensemble gradient for 4 torsion barriers from a
    # longer run (200 ps), and its standard error
    k_rows = np.flatnonzero(r.std_error > 0)
    labels = cg.gradients.parameter_labels(ff.params, ff.row_info)
    torsion_k = [i for i in k_rows if labels[int(r.indices[i])].startswith("ProperTorsions.k")]
    z = np.abs(r.flat) / np.where(r.std_error > 0, r.std_error, np.inf)
    pick = sorted(torsion_k, key=lambda i: -z[i])[:4]
    wrt = np.asarray([int(r.indices[i]) for i in pick])
    rep = ReservoirReporter(2000, every=50)
    cg.simulate(integ, state, 100_000, reporters=[rep])
    long_frames = np.stack(rep.frames)[np.argsort(rep.steps)]
    ref = ensemble_gradient(system, long_frames, rg, temperature=T, wrt=wrt)
    horizons = [10, 25, 50, 125, 250, 500, 1000, 2000]
    study = horizon_study(ff, integ, long_frames, rg, ref.flat, wrt, horizons)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    hs = [s[0] for s in study]
    ax.loglog(hs, [s[1] for s in study], "o-", label="RMS error vs ensemble gradient")
    ax.loglog(hs, [s[2] for s in study], "s--", label="spread over 8 starts")
    ax.axhline(np.linalg.norm(ref.std_error) / np.linalg.norm(ref.flat), color="gray",
               ls=":", label="ensemble reference's own error")
    ax2 = ax.twinx()
    ax2.semilogy(hs, [s[3] for s in study], "^-", color="tab:red", alpha=0.6,
                 label="tangent growth (right)")
    ax2.set_ylabel("tangent norm growth, last / first tenth")
    ax.set_xlabel("horizon (ps)")
    ax.set_ylabel("relative error of d<Rg>/d(torsion k)")
    ax.set_title("Aspirin, Sage 2.2.1, Langevin 300 K: trajectory gradients vs horizon",
                 fontsize=9)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="upper center")
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "img" / "gradient_horizon.png", dpi=120)

    lines = [machine_line(), "",
             "Aspirin (21 atoms) with Sage 2.2.1, AM1-BCC, bonds to H constrained, vacuum;"
             " Langevin 300 K, 2 fs, 1/ps. `python benchmarks/bench_gradients.py`.", "",
             f"Plain step: {t_plain * 1e6:.0f} us. Forward mode (tangents batched with vmap):",
             "", "| tangents P | us/step | x plain step | x plain step per tangent |",
             "|---|---|---|---|"]
    lines += [f"| {p} | {t * 1e6:.0f} | {x:.1f} | {xp:.2f} |" for p, t, x, xp in rows]
    lines += ["", f"Reverse mode, all {n_theta} parameters in one backward pass:"
              f" {t_rev * 1e6:.0f} us/step ({t_rev / t_plain:.1f}x a plain step).", "",
              "Memory at T = 10^4 steps (XLA's compiled buffers: temporaries + arguments +"
              " outputs):", "", "| estimator | memory | wall time (s) |", "|---|---|---|"]
    lines += [f"| {name} | {b / 2 ** 20:.1f} MiB | {t:.1f} |" for name, b, t in mem]
    fd_used, fd_all = 2 * used * t_sim, 2 * n_theta * t_sim
    lines += ["", f"Ensemble gradient of <Rg> for all {n_theta} Sage parameters from 400 frames"
              f" (40 ps): {t_ens:.2f} s; {used} entries are used by aspirin. Central finite"
              f" differences of re-simulated 40 ps averages need 2 runs per parameter:"
              f" {t_sim:.1f} s per run, so {fd_used / 3600:.1f} h for the used entries"
              f" ({fd_used / t_ens:.0f}x) and {fd_all / 3600:.1f} h for all"
              f" ({fd_all / t_ens:.0f}x); at this run length most such differences would"
              " also be below their noise.", "",
              "Gradient error vs horizon (forward mode, 4 torsion barriers, 8 equilibrium"
              f" starts; reference: ensemble gradient from 200 ps, relative error"
              f" {np.linalg.norm(ref.std_error) / np.linalg.norm(ref.flat):.2f}):", "",
              "| horizon (ps) | RMS relative error | spread over starts | tangent growth |",
              "|---|---|---|---|"]
    lines += [f"| {h:g} | {e:.2f} | {s:.2f} | {g:.3g} |" for h, e, s, g in study]
    lines += ["", "![gradient error vs horizon](../docs/img/gradient_horizon.png)", "",
              f"(total {time.perf_counter() - t0:.0f} s)"]
    write_section("gradients", "## Gradient estimators\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
