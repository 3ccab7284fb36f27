"""The fit loop behind ``chronograd fit``: build, check, iterate with checkpoints, write outputs.

Everything that can be wrong with the input (config, data, force field, a target that is not
finite at the start, a checkpoint that does not belong to this fit) is found before the output
directory is touched. During the fit the directory holds ``checkpoint.npz`` (data only, see
``chronograd.fit.checkpoint``) and ``log.jsonl``, each replaced atomically; at the end the
fitted ``.offxml``, ``summary.json`` and the report are written to a staging folder and moved
in, so no file in it is ever half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from chronograd.errors import ChronogradError, InputError
from chronograd.fit.build import build_objective


class FitError(ChronogradError, RuntimeError):
    """A fit that cannot go on (e.g. a target became non-finite); the checkpoint is kept."""


def _optimizer(cfg):
    from chronograd.fit.optimizers import make_optimizer

    opts = {k: v for k, v in cfg.optimizer.items() if k not in ("method", "iterations")
            and k not in CONVERGENCE_DEFAULTS}
    try:
        return make_optimizer(cfg.optimizer["method"], **opts)
    except InputError as e:
        raise cfg.error("optimizer", "method", message=str(e)) from None


# Stopping rules (any one stops the fit): the objective's relative change stays below
# loss_tolerance for `patience` iterations in a row, the gradient norm (in phi, prior-width
# units) falls below gradient_tolerance, or a step moves phi by less than step_tolerance.
# Neuroevolution (stochastic, most mutations rejected) uses none by default.
CONVERGENCE_DEFAULTS = {"loss_tolerance": 1e-6, "gradient_tolerance": 1e-6,
                        "step_tolerance": 1e-8, "patience": 2}


def convergence_options(cfg) -> dict:
    method = cfg.optimizer.get("method")
    out = {}
    for key, default in CONVERGENCE_DEFAULTS.items():
        if method == "neuroevolution" and key != "patience":
            default = 0.0
        value = cfg.optimizer.get(key, default)
        if not (np.isfinite(value) and value >= 0) or (key == "patience" and value < 1):
            raise cfg.error("optimizer", key, message=f"{key} must be a number >= 0"
                            + (" (an integer >= 1)" if key == "patience" else ""))
        out[key] = value
    return out


def converged(log: list[dict], step_norm: float, options: dict) -> str | None:
    """Why the fit stops after the last log entry, or None."""
    last = log[-1]
    g = last.get("grad_norm")
    if g is not None and g <= options["gradient_tolerance"]:
        return (f"gradient norm {g:.3g} <= gradient_tolerance"
                f" {options['gradient_tolerance']:g}")
    noise = last.get("loss_noise")
    if noise and step_norm == 0:  # sampled targets: every trial step was rejected
        return (f"no trial step lowered the objective by more than its statistical noise"
                f" {noise:.3g}: converged within noise")
    if options["step_tolerance"] > 0 and step_norm <= options["step_tolerance"]:
        return f"step {step_norm:.3g} <= step_tolerance {options['step_tolerance']:g}"
    n, tol = int(options["patience"]), options["loss_tolerance"]
    if noise and len(log) > n:  # sampled targets: changes no larger than the noise
        changes = [abs(log[-k]["loss"] - log[-k - 1]["loss"]) for k in range(1, n + 1)]
        if max(changes) <= noise:
            return (f"objective change {max(changes):.3g} within its statistical noise"
                    f" {noise:.3g} for {n} iterations")
    if tol > 0 and len(log) > n:
        changes = [abs(log[-k]["loss"] - log[-k - 1]["loss"])
                   / max(abs(log[-k - 1]["loss"]), 1e-300) for k in range(1, n + 1)]
        if max(changes) <= tol:
            return (f"relative objective change {max(changes):.3g} <= loss_tolerance {tol:g}"
                    f" for {n} iterations")
    return None


def _log_text(log):
    return "".join(json.dumps(e) + "\n" for e in log)


def _metrics(obj, phi):
    theta = obj.theta(np.asarray(phi))
    return {t.name: t.metrics(theta) for t in obj.targets}


def run_fit(cfg, *, resume: bool = False, stop_after: int | None = None,
            progress: bool = True, client=None) -> dict:
    """Run (or resume) the fit described by ``cfg``; returns the summary dict.

    Args:
        resume: continue from ``checkpoint.npz`` in the output directory.
        stop_after: run at most this many iterations now (the checkpoint allows --resume).
        progress: show a progress bar.
        client: a dask Client (default: from ``[parallel]``).
    """
    from chronograd.fit.checkpoint import (
        FILENAME,
        LEGACY_FILENAME,
        open_fit_checkpoint,
        restore_fit_checkpoint,
    )
    from chronograd.fit.parallel import make_client

    out = cfg.resolve(cfg.output["directory"])
    ckpt_path = out / FILENAME
    sha = hashlib.sha256(cfg.text.encode()).hexdigest()
    if out.exists() and not out.is_dir():
        raise cfg.error("output", "directory", message=f"{out} exists and is not a directory")
    if resume:
        if not ckpt_path.is_file():
            legacy = (out / LEGACY_FILENAME).is_file()
            raise InputError(f"{out}: no {FILENAME} to resume from"
                             + (f"; {LEGACY_FILENAME} is an older, pickled format that"
                                " chronograd no longer reads (unpickling can run code): start"
                                " the fit again without --resume in a new directory"
                                if legacy else "; run without --resume"))
        opened = open_fit_checkpoint(ckpt_path, config_sha256=sha, config_path=cfg.path)
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: output directory exists and is not empty; use --resume to"
                         " continue its fit, or choose another [output] directory")
    iterations = cfg.optimizer.get("iterations", 20)
    every = cfg.output.get("checkpoint_every", 1)
    if iterations < 0 or every < 1:
        raise cfg.error("optimizer" if iterations < 0 else "output",
                        "iterations" if iterations < 0 else "checkpoint_every",
                        message="must be positive")
    opt = _optimizer(cfg)
    ff, obj = build_objective(cfg)
    sampled = [k for k, t in enumerate(obj.targets) if hasattr(t, "get_state")]
    if sampled and (client is not None or cfg.parallel.get("cluster", "none") != "none"):
        raise cfg.error("parallel", "cluster", message=f"target"
                        f" {obj.targets[sampled[0]].name!r} keeps a simulated sample in this"
                        " process; run fits with liquid targets with cluster = \"none\"")
    ckpt = None
    if resume:
        ckpt = restore_fit_checkpoint(*opened, path=ckpt_path, labels=obj.labels,
                                      state_template=opt.init(np.zeros(obj.n)),
                                      iterations=iterations)
        for k, state in ckpt["target_states"].items():
            if not isinstance(k, int) or k not in sampled:
                raise InputError(f"{ckpt_path}: holds a sample for target {k!r}, which this"
                                 " config does not simulate")
            obj.targets[k].set_state(state)
    theta0 = obj.theta(np.zeros(obj.n))
    for t in obj.targets:
        t.check_finite(theta0)
    own = client is None
    if own:
        client = make_client(cfg)
    try:
        return _iterate(cfg, opt, ff, obj, client, resume, ckpt, out, sha, iterations, every,
                        stop_after, progress)
    finally:
        if own and client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()


def _iterate(cfg, opt, ff, obj, client, resume, ckpt, out, sha, iterations, every, stop_after,
             progress):
    from chronograd.fit.checkpoint import FILENAME, write_fit_checkpoint
    from chronograd.fit.objective import Evaluator
    from chronograd.fit.parallel import DaskRemote
    from chronograd.interop.files import atomic_write

    ckpt_path, log_path = out / FILENAME, out / "log.jsonl"
    ev = Evaluator(obj, client, DaskRemote(cfg, obj.fp.indices) if client else None)

    stopping = convergence_options(cfg)
    t0 = time.perf_counter()
    if resume:
        state, log, start = ckpt["state"], ckpt["log"], ckpt["iteration"]
        ev.n_value, ev.n_gradient, ev.n_jacobian = ckpt["evaluations"]
        wall0 = ckpt["wall_s"]
    else:
        out.mkdir(parents=True, exist_ok=True)
        state, start, wall0 = opt.init(np.zeros(obj.n)), 0, 0.0
        loss0, parts0 = ev.value(np.zeros(obj.n))  # iteration 0: the starting force field
        log = [{"iteration": 0, "loss": float(loss0),
                "targets": {t.name: float(v) for t, v in zip(obj.targets, parts0,
                                                             strict=True)},
                "prior": obj.prior(np.zeros(obj.n)),
                "evaluations": {"value": ev.n_value, "gradient": ev.n_gradient,
                                "jacobian": ev.n_jacobian},
                "wall_s": round(time.perf_counter() - t0, 3)}]
        if _sampling(obj):
            log[0]["sampling"] = _sampling(obj)
    if log and "converged" in log[-1]:  # resuming a fit that had already stopped
        return _finish(cfg, ff, obj, state, log, out, ev)
    end = iterations if stop_after is None else min(iterations, start + stop_after)

    def save(k):
        blob = {"iteration": k, "state": state, "log": log,
                "evaluations": (ev.n_value, ev.n_gradient, ev.n_jacobian),
                "wall_s": wall0 + time.perf_counter() - t0, "labels": obj.labels,
                "target_states": {j: t.get_state() for j, t in enumerate(obj.targets)
                                  if hasattr(t, "get_state")}}
        write_fit_checkpoint(ckpt_path, blob, config_sha256=sha)
        atomic_write(log_path, lambda tmp: tmp.write_text(_log_text(log)))

    bar = _progress(progress, end - start, start, iterations, opt.name)
    stopped = None
    try:
        for k in range(start, end):
            phi_before = np.asarray(state["phi"]).copy()
            state, info = opt.step(state, ev)
            if not np.isfinite(info["loss"]):
                bad = [obj.targets[j].name for j, v in enumerate(info["targets"])
                       if not np.isfinite(v)]
                save(k)
                raise FitError(f"iteration {k + 1}: target {', '.join(bad) or 'prior'} gave a"
                               f" non-finite loss; the last good state is in {ckpt_path}")
            entry = {"iteration": k + 1, "loss": float(info["loss"]),
                     "targets": {t.name: float(v) for t, v in zip(obj.targets, info["targets"],
                                                                  strict=True)},
                     "prior": obj.prior(state["phi"]),
                     "evaluations": {"value": ev.n_value, "gradient": ev.n_gradient,
                                     "jacobian": ev.n_jacobian},
                     "wall_s": round(wall0 + time.perf_counter() - t0, 3)}
            if _sampling(obj):
                entry["sampling"] = _sampling(obj)
            entry.update({k2: v for k2, v in info.items()
                          if k2 not in ("loss", "targets") and np.isscalar(v)})
            log.append(entry)
            stopped = converged(log, float(np.linalg.norm(np.asarray(state["phi"])
                                                          - phi_before)), stopping)
            if stopped:
                entry["converged"] = stopped
            if stopped or (k + 1) % every == 0 or k + 1 == end:
                save(k + 1)
            bar.advance(entry)
            if stopped:
                break
    finally:
        bar.close()
    if end < iterations and not stopped:
        return {"finished": False, "iteration": end, "loss": log[-1]["loss"] if log else None}
    return _finish(cfg, ff, obj, state, log, out, ev)


def _sampling(obj) -> dict:
    """How the sampled targets' last values were made: simulations so far, the effective
    sample fraction, how many simulations the sample pools, and the last simulation's
    length, standard errors and whether it reached the requested ones (with the warning
    when it did not)."""
    out = {}
    for t in obj.targets:
        if hasattr(t, "get_state"):
            pooled = len(t._segments()[0]) if getattr(t, "sample", None) else 0
            out[t.name] = {"simulations": t.n_simulations, "ess_fraction": t.last_ess,
                           "pooled": pooled,
                           **{k: v for k, v in (getattr(t, "sampling", None) or {}).items()
                              if k != "requested"}}
    return out


def _finish(cfg, ff, obj, state, log, out, ev):
    from chronograd.fit.report import write_report

    phi = np.asarray(state["phi"])
    theta = obj.theta(phi)
    stage = out / ".staging"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    name = Path(cfg.forcefield["file"]).stem + "-fitted.offxml"
    ff.to_offxml(stage / name, theta)
    # initial metrics and loss first, then final ones (sampled targets re-simulate at most
    # once for each)
    before = _metrics(obj, np.zeros(obj.n))
    loss0 = (log[0]["loss"] if log and log[0]["iteration"] == 0 else
             float(sum(obj.target_value(k, np.zeros(obj.n)) for k in range(len(obj.targets)))))
    after = _metrics(obj, phi)
    values0, values = obj.values(np.zeros(obj.n)), obj.values(phi)
    summary = {
        "finished": True, "forcefield": name,
        "iterations": sum(1 for e in log if e["iteration"] > 0),
        "stopped": log[-1].get("converged", "iteration limit") if log else "iteration limit",
        "loss_initial": loss0,
        "loss_final": log[-1]["loss"] if log else None,
        "optimizer": cfg.optimizer["method"],
        "evaluations": {"value": ev.n_value, "gradient": ev.n_gradient,
                        "jacobian": ev.n_jacobian},
        "metrics_initial": before, "metrics_final": after,
        "parameters": [{"label": lab, "initial": float(a), "final": float(b)}
                       for lab, a, b in zip(obj.labels, values0, values, strict=True)],
    }
    validation = {}
    for t in obj.targets:  # sampled targets: fresh, longer simulations judge the fit
        if getattr(t, "validation_production", 0):
            validation[t.name] = {"before": t.validate(obj.theta(np.zeros(obj.n))),
                                  "after": t.validate(theta)}
    if validation:
        summary["validation"] = validation
    if cfg.output.get("report", True):
        write_report(stage, cfg, obj, log, summary, np.zeros(obj.n), phi)
    (stage / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (stage / "log.jsonl").write_text(_log_text(log))
    for item in sorted(stage.iterdir()):
        os.replace(item, out / item.name)
    stage.rmdir()
    summary["output"] = str(out)
    return summary


class _progress:
    """A rich progress bar with the current loss (no-op when disabled)."""

    def __init__(self, enabled, total, start, iterations, name):
        self.p = None
        if not enabled or total <= 0:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn(f"fit ({name})"), BarColumn(),
                          TextColumn("{task.completed}/{task.total}"),
                          TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn())
        self.p.start()
        self.task = self.p.add_task("fit", total=iterations, completed=start, loss="-")

    def advance(self, entry):
        if self.p is not None:
            self.p.update(self.task, advance=1, loss=f"{entry['loss']:.5g}")

    def close(self):
        if self.p is not None:
            self.p.stop()
