"""Fitting, measured in one run on the shipped QM data (data/qm, B3LYP-D3BJ/6-31G*):

1. the same L-BFGS fit of Sage 2.2.1's 90 bond, angle and torsion-barrier entries to the
   conformer energies/forces and torsion scans, once with exact gradients (one reverse pass
   per gradient) and once with central finite differences of the same objective (2 objective
   values per trained parameter): wall time and ratio;
2. Dask: one objective gradient over four optimized-geometry targets (an MM minimization
   and an implicit gradient each) on a LocalCluster with 1 and with 2 worker processes
   (after each worker has built and compiled its targets);
3. neuroevolution (Metropolis-accepted Gaussian mutations, Whitelam & Tamblyn 2021) vs
   gradient descent (L-BFGS, Adam) on the torsion-barrier fit to the six scans: objective vs
   number of objective evaluations and vs wall time. Plot: docs/img/fit_neuroevolution.png.
Run: `python benchmarks/bench_fit.py` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.fit import (  # noqa: E402
    EnergyForceTarget,
    Evaluator,
    Objective,
    TorsionProfileTarget,
    list_records,
    load_qm_dataset,
    make_optimizer,
    select_parameters,
)

ROOT = Path(__file__).resolve().parent.parent
QM = ROOT / "data" / "qm"
FF = "openff_unconstrained-2.2.1.offxml"


class FiniteDifferenceEvaluator(Evaluator):
    """The same objective, its gradient by central differences of values (step h in phi)."""

    def __init__(self, objective, h=1e-4):
        super().__init__(objective)
        self.h = h

    def value_and_grad(self, phi):
        value, parts = self.value(phi)
        grad = np.empty(len(phi))
        for i in range(len(phi)):
            e = np.zeros(len(phi))
            e[i] = self.h
            grad[i] = (self.value(phi + e)[0] - self.value(phi - e)[0]) / (2 * self.h)
        return value, grad, parts


def run(opt, ev, n_iter, n_params):
    state = opt.init(np.zeros(n_params))
    losses, evals, times = [], [], []
    t0 = time.perf_counter()
    for _ in range(n_iter):
        state, info = opt.step(state, ev)
        losses.append(info["loss"])
        evals.append(ev.n_value + ev.n_gradient)
        times.append(time.perf_counter() - t0)
    return state, np.array(losses), np.array(evals), np.array(times)


def torsion_objective(ff):
    scans = [r for r, k in list_records(QM).items() if k == "torsion_scan"]
    target = TorsionProfileTarget(ff, load_qm_dataset(QM, records=scans), name="scans")
    wrt = select_parameters(ff, [{"handler": "ProperTorsions", "attributes": ["k"]}])
    return Objective(ff, [target], wrt, prior_weight=0.1)


def valence_objective(ff):
    known = list_records(QM)
    conf = [r for r, k in known.items() if k == "conformers"]
    scans = [r for r, k in known.items() if k == "torsion_scan"]
    targets = [EnergyForceTarget(ff, load_qm_dataset(QM, records=conf), name="conformers",
                                 force_weight=5.0),
               TorsionProfileTarget(ff, load_qm_dataset(QM, records=scans), name="scans")]
    wrt = select_parameters(ff, [{"handler": "Bonds"}, {"handler": "Angles"},
                                 {"handler": "ProperTorsions", "attributes": ["k"]}])
    return Objective(ff, targets, wrt, prior_weight=1.0)


def main():
    lines = [machine_line(), ""]
    ff = cg.ForceField(FF)
    obj = valence_objective(ff)
    n_geom = sum(len(r.record.energy) for t in obj.targets for r in t.records)
    phi0 = np.zeros(obj.n)
    ev, fd = Evaluator(obj), FiniteDifferenceEvaluator(obj)
    ev.value_and_grad(phi0)  # compile both paths and the L-BFGS update first
    ev.value(phi0)
    run(make_optimizer("lbfgs"), Evaluator(obj), 1, obj.n)
    n_iter = 20
    t = time.perf_counter()
    _, loss_g, evals_g, _ = run(make_optimizer("lbfgs"), Evaluator(obj), n_iter, obj.n)
    t_grad = time.perf_counter() - t
    t = time.perf_counter()
    _, loss_fd, evals_fd, _ = run(make_optimizer("lbfgs"), fd, n_iter, obj.n)
    t_fd = time.perf_counter() - t
    t_value = min(_timed(lambda: ev.value(phi0)) for _ in range(5))
    t_vg = min(_timed(lambda: ev.value_and_grad(phi0)) for _ in range(5))
    lines += [
        "### Gradient fit vs finite-difference fit (same objective, same L-BFGS, same data)", "",
        f"Sage 2.2.1's {obj.n} bond, angle and torsion-barrier entries used by the molecules"
        f" against the conformer energies and forces and the torsion scans ({n_geom} QM"
        f" geometries); {n_iter} L-BFGS iterations each, compiled before timing.", "",
        "| gradient | wall time (s) | gradients | objective values | final objective |",
        "|---|---|---|---|---|",
        f"| exact (jax.grad, one reverse pass) | {t_grad:.2f} | {evals_g[-1]} | 0 |"
        f" {loss_g[-1]:.6g} |",
        f"| central finite differences ({2 * obj.n} values per gradient) | {t_fd:.1f} |"
        f" 0 | {fd.n_value} | {loss_fd[-1]:.6g} |", "",
        f"Ratio (finite differences / exact): **{t_fd / t_grad:.0f}x**. One objective value"
        f" {t_value * 1e3:.1f} ms, value + exact gradient {t_vg * 1e3:.1f} ms"
        f" ({t_vg / t_value:.1f}x a value, against {2 * obj.n} values for a central"
        " difference). The ratio grows with the number of trained parameters.", ""]

    lines += dask_section()
    lines += neuroevolution_section(torsion_objective(ff))
    write_section("fitting", "## Fitting (QM targets)\n\n" + "\n".join(lines))


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def dask_section():
    from dask.distributed import Client, LocalCluster

    from chronograd.fit import load_config
    from chronograd.fit.parallel import DaskRemote
    from chronograd.fit.runner import build_objective

    mols = ["opt-phenol", "opt-anisole", "opt-benzaldehyde", "opt-styrene"]
    cfg_text = f'[forcefield]\nfile = "{FF}"\n' + "".join(
        f'[[targets]]\nname = "{m}"\ntype = "optimized_geometry"\ndataset = "{QM}"\n'
        f'records = ["{m}"]\n' for m in mols) + (
        '[[parameters]]\nhandler = "Bonds"\n[[parameters]]\nhandler = "Angles"\n'
        '[optimizer]\nmethod = "lbfgs"\n[output]\ndirectory = "unused"\n')
    path = ROOT / "out" / "bench_fit_dask.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(cfg_text)
    cfg = load_config(path)
    _, obj = build_objective(cfg)
    phi = 0.1 * np.ones(obj.n)
    serial = Evaluator(obj)
    v_serial, g_serial, _ = serial.value_and_grad(phi)
    t_serial = min(_timed(lambda: serial.value_and_grad(phi)) for _ in range(3))
    rows, results = [], {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as lc, Client(lc) as client:
            ev = Evaluator(obj, client, DaskRemote(cfg, obj.fp.indices))
            t = time.perf_counter()
            v, g, _ = ev.value_and_grad(phi)  # workers build + compile their targets
            t_first = time.perf_counter() - t
            t_eval = min(_timed(lambda ev=ev: ev.value_and_grad(phi)) for _ in range(3))
            results[workers] = t_eval
            same = v == v_serial and np.array_equal(g, g_serial)
            results[workers, "first"] = t_first
            rows.append(f"| {workers} | {t_first:.1f} | {t_eval:.3f} | {same} |")
    return ["### Dask: targets on 1 vs 2 workers", "",
            "One objective value + gradient over 4 optimized-geometry targets (phenol, anisole,"
            " benzaldehyde, styrene: an MM minimization from the QM minimum and an implicit"
            f" gradient each; {obj.n} trained bond and angle parameters). LocalCluster, one"
            f" thread per worker process. Serial in-process: {t_serial:.3f} s.", "",
            "| workers | first call, build + compile (s) | per gradient (s) | equal to serial"
            " bit for bit |", "|---|---|---|---|", *rows, "",
            f"Speed-up with 2 workers (2 cores): **{results[1] / results[2]:.2f}x** per"
            f" gradient, **{results[1, 'first'] / results[2, 'first']:.2f}x** for the first"
            " call (building the systems, AM1-BCC charges and compiling, per worker). These"
            f" small molecules cost {t_serial * 1e3:.0f} ms per serial in-process gradient,"
            " less than Dask's own per-task overhead, so either Dask run is slower than the"
            " serial one; targets that cost seconds per evaluation (large molecules, many"
            " geometries) are where workers pay.", ""]


def neuroevolution_section(obj):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = Evaluator(obj)  # compiled before the timed runs
    l0 = ev.value(np.zeros(obj.n))[0]
    ev.value_and_grad(np.zeros(obj.n))
    t_value = min(_timed(lambda: ev.value(np.zeros(obj.n))) for _ in range(5))
    t_vg = min(_timed(lambda: ev.value_and_grad(np.zeros(obj.n))) for _ in range(5))
    runs = {
        "L-BFGS": run(make_optimizer("lbfgs"), Evaluator(obj), 25, obj.n),
        "Adam (lr 0.1)": run(make_optimizer("adam", learning_rate=0.1), Evaluator(obj), 150,
                             obj.n),
        "neuroevolution": run(make_optimizer("neuroevolution", mutation_scale=0.1, seed=0),
                              Evaluator(obj), 1500, obj.n),
    }
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    rows = []
    for name, (_, losses, evals, times) in runs.items():
        axes[0].semilogy(np.r_[0, evals], np.r_[l0, losses], label=name)
        axes[1].semilogy(np.r_[0, times], np.r_[l0, losses], label=name)
        reach = np.flatnonzero(losses <= 1.1 * runs["L-BFGS"][1][-1])
        rows.append(f"| {name} | {evals[-1]} | {losses[-1]:.4g} | "
                    f"{evals[reach[0]] if reach.size else 'not reached'} | {times[-1]:.1f} |")
    axes[0].set_xlabel("objective evaluations (value, or value + gradient)")
    axes[1].set_xlabel("wall time (s)")
    for ax in axes:
        ax.set_ylabel("objective")
        ax.legend(fontsize=8)
    fig.suptitle(f"Sage torsion barriers ({obj.n}) vs 6 QM torsion scans", fontsize=10)
    fig.tight_layout()
    img = ROOT / "docs" / "img" / "fit_neuroevolution.png"
    fig.savefig(img, dpi=110)
    plt.close(fig)
    return ["### Neuroevolution vs gradient descent", "",
            f"Sage 2.2.1's {obj.n} torsion barriers against the 6 torsion scans, from the"
            f" initial values (objective {l0:.4g}). A value"
            f" costs {t_value * 1e3:.1f} ms and a value + gradient {t_vg * 1e3:.1f} ms, so the"
            " x axis of the left panel favours neuroevolution by that factor; wall times"
            " include each optimizer's own first-step compilation. Plot:"
            " docs/img/fit_neuroevolution.png.", "",
            "| optimizer | evaluations | final objective | evaluations to reach 1.1x the"
            " L-BFGS optimum | wall time (s) |", "|---|---|---|---|---|", *rows, ""]


if __name__ == "__main__":
    main()
