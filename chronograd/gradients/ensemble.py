"""Ensemble (thermodynamic) gradients, reweighting, and time vs ensemble averages.

For a canonical (or isothermal-isobaric) average <O>_theta,

    d<O>/dtheta = <dO/dtheta> - beta (<O dU/dtheta> - <O><dU/dtheta>)

from stored frames: one dU/dtheta per frame (a reverse pass), no chaos, cost independent of
how long the run was. In NPT the enthalpy's pV term does not depend on theta, so the same
formula gives d<density>/dtheta. The standard error is the delta method's with each term's
statistical inefficiency (pymbar's sum, corrected for the bias of short series:
``statistical_inefficiency``), frames in the order given; the effective sample size uses the
statistical inefficiency of O.

Reweighting evaluates <O> at a new theta without re-simulating: EXP (Zwanzig) weights
w_i ~ exp(-beta (U_new(x_i) - U_old(x_i))), or MBAR (pymbar) over frames from several states.
Both are refused with a ReweightingError when the effective sample size (sum w)^2 / sum w^2
falls below ``min_ess``: the states overlap too little, so re-simulate at the new theta (or
add intermediate states for MBAR).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from chronograd.errors import InputError
from chronograd.gradients import reweighting
from chronograd.gradients.common import (
    GradientError,
    GradientResult,
    flat_params,
    statistical_verdict,
)
from chronograd.observables import check_finite
from chronograd.space.neighbor_list import update_or_regrow
from chronograd.system import structure as st
from chronograd.system.pairs import choose_neighbor_list
from chronograd.units import BAR, BOLTZMANN


class ReweightingError(GradientError):
    """Too few effective samples to reweight to the requested parameters."""


def _pymbar():
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pymbar
    return pymbar


def _normalized_autocorrelation(a) -> np.ndarray:
    """rho_t, t = 0..n-1, of a series (or of each column of [n, m]) with its sample mean
    removed (FFT; each lag averaged over its n - t products, normalized by the lag-0 value:
    pymbar's definition)."""
    n = len(a)
    d = a - a.mean(axis=0)
    f = np.fft.rfft(d, 2 * n, axis=0)
    c = np.fft.irfft(f * np.conj(f), 2 * n, axis=0)[:n]
    c = c / np.arange(n, 0, -1).reshape((n,) + (1,) * (d.ndim - 1))
    return c / c[0]


def statistical_inefficiency(series, *, mintime: int = 3, corrected: bool = True) -> float:
    """g >= 1: how many correlated samples make one independent one.

    g = 1 + 2 sum_t (1 - t/n) rho_t over lags until rho_t first drops to zero after
    ``mintime`` (pymbar.timeseries.statistical_inefficiency's sum; ``corrected=False`` gives
    its value). A series of n frames measures each rho_t around its own sample mean, which
    lowers every lag by about the mean's variance, g/n of the series' variance:
    E[rho_hat_t] ~ (rho_t - g/n) / (1 - g/n). Uncorrected, a series of 20 correlation times
    underestimates g by ~30-45 % (density of 256 TIP3P waters, 20 ps pieces: pymbar's g 42
    frames, corrected 61, g of the whole 400 ps runs 77; benchmarks/RESULTS.md
    "liquid-errors"), and the sum also stops too early. ``corrected`` (default) adds the
    offset back, rho_t (1 - e) + e with e = g/n (at most 1/2), and iterates g to its fixed
    point. A series of shape [n, ...] is reduced to its per-frame mean."""
    a = np.asarray(series, np.float64)
    a = a.reshape(a.shape[0], -1).mean(axis=1) if a.ndim > 1 else a
    return float(_statistical_inefficiencies(a[:, None], mintime=mintime,
                                             corrected=corrected)[0])


def _statistical_inefficiencies(a, *, mintime: int = 3, corrected: bool = True) -> np.ndarray:
    """``statistical_inefficiency`` of every column of ``a`` [n, m] at once ([m])."""
    a = np.asarray(a, np.float64)
    n, m = a.shape
    g = np.ones(m)
    live = np.std(a, axis=0) > 0
    if n < 4 or not live.any():
        return g
    rho = _normalized_autocorrelation(a[:, live])[1:n - 1]  # lags 1 .. n-2
    t = np.arange(1, n - 1)[:, None]
    taper = 1.0 - t / n
    gl = np.ones(rho.shape[1])
    for _ in range(100):
        e = np.minimum(gl / n, 0.5) if corrected else np.zeros_like(gl)
        c = rho * (1.0 - e) + e
        before_stop = np.cumsum((c <= 0.0) & (t > mintime), axis=0) == 0
        g_new = np.maximum(1.0, 1.0 + 2.0 * np.sum(np.where(before_stop, c * taper, 0.0),
                                                    axis=0))
        done = np.abs(g_new - gl) <= 1e-9 * g_new
        gl = g_new
        if not corrected or done.all():
            break
    g[live] = gl
    return g


def mean_std_error(series, weights=None, *, segments=None) -> dict:
    """The (weighted) mean of a time series and its standard error, the one estimator every
    ensemble average uses (fresh samples, reweighted samples, liquid properties).

    ``series`` [n] (or [n, ...], whose per-frame mean sets the correlation time); ``weights``
    [n] normalized weights of the frames (e.g. exponential reweighting or MBAR), default
    equal. The variance is the delta-method one of the self-normalized estimator,
    sum w_i^2 (o_i - mean)^2 / (1 - sum w_i^2) (for equal weights the sample variance / n),
    times g, the statistical inefficiency of the series in sampling order (bias-corrected,
    see ``statistical_inefficiency``): what the frames' correlation in time costs, and
    divided by 1 - g sum w_i^2 (1 - g/n for equal weights; at most 2): a correlated series'
    spread about its own mean understates its variance by that factor.

    ``segments``: frame counts of independent runs concatenated in ``series`` (e.g. the
    simulations an MBAR estimate pools); each run's terms get its own g (and its own
    small-sample factor), and runs are uncorrelated with each other. Treating the pooled
    frames as independent draws from the mixture ignores the stratification of fixed run
    lengths, which can only lower the variance: the error is conservative there. Returns
    {"value", "std_error", "statistical_inefficiency" (the w^2-weighted mean g over
    segments), "n_effective" (Kish size / g)}."""
    o = np.asarray(series, np.float64)
    n = len(o)
    o2 = o.reshape(n, -1)
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or abs(w.sum() - 1.0) > 1e-6:
        raise InputError(f"weights must be {n} finite numbers summing to 1")
    seg = [n] if segments is None else [int(m) for m in segments]
    if sum(seg) != n or min(seg) < 1:
        raise InputError(f"segments {seg} must be positive frame counts summing to {n}")
    value = w @ o2
    sw2 = float(w @ w)
    var, gw = 0.0, 0.0
    for lo, hi in zip(np.cumsum([0] + seg[:-1]), np.cumsum(seg), strict=True):
        wk, ok = w[lo:hi], o2[lo:hi]
        g = statistical_inefficiency(ok.mean(axis=1))
        s2 = float(wk @ wk)
        var = var + (wk ** 2) @ (ok - value) ** 2 * g / max(1.0 - g * s2, 0.5)
        gw += g * s2
    var = var / max(1.0 - sw2, 1e-300)
    g = gw / sw2
    shape = o.shape[1:]
    return {"value": value.reshape(shape) if shape else float(value[0]),
            "std_error": np.sqrt(var).reshape(shape) if shape else float(np.sqrt(var[0])),
            "statistical_inefficiency": g, "n_effective": 1.0 / sw2 / g}


def _frames_and_boxes(system, frames, boxes):
    x = np.asarray(frames, np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise InputError(f"frames must be [n_frames, n_atoms, 3] nm; got shape {x.shape}")
    if len(x) < 2:
        raise InputError("ensemble estimates need at least 2 frames")
    if boxes is None:
        b = [None if system.box is None else np.asarray(system.box)] * len(x)
    else:
        b = list(np.asarray(boxes, np.float64)) if not isinstance(boxes, list) else boxes
        if len(b) != len(x):
            raise InputError(f"got {len(x)} frames but {len(b)} boxes")
    return x, b


def _energy(structure, x, box, fp, phi, nbrs):
    pairs = None if nbrs is None else nbrs.pairs()
    return st.total_energy(structure, x, box, fp.params(phi), pairs)


def _observable_and_grad(observable, x, box, fp, phi):
    f = lambda q: observable(x, box, fp.params(q))  # noqa: E731
    return f(phi), jax.jacrev(f)(phi)


# Module level, with the system's structure, theta's layout and the observable as arguments:
# compiled once per shapes, options and observable, not once per call (contract 3).
_ENERGY = jax.jit(_energy)
_ENERGY_AND_GRAD = jax.jit(jax.value_and_grad(_energy, argnums=4))
_OBSERVABLE_AND_GRAD = jax.jit(_observable_and_grad, static_argnums=0)


class _PerFrame:
    """Evaluates dU/dphi frame by frame (compiled programs shared between calls, with a
    neighbor list for systems with a cutoff, regrown when a frame needs more room)."""

    def __init__(self, system, fp):
        self.system, self.fp = system, fp
        self.use_nl = choose_neighbor_list(system, None)  # exactly when there is a cutoff
        self.nl_fns = system.neighbor_list() if self.use_nl else None
        self.nbrs = None
        self.structure = system.structure

    def energy_and_grad(self, x, box, phi, nbrs):
        return _ENERGY_AND_GRAD(self.structure, x, box, self.fp, phi, nbrs)

    def energy(self, x, box, phi, nbrs):
        return _ENERGY(self.structure, x, box, self.fp, phi, nbrs)

    def neighbors(self, x, box):
        if not self.use_nl:
            return None
        xj, bj = jnp.asarray(x), None if box is None else jnp.asarray(box)
        if self.nbrs is None:
            self.nbrs = self.nl_fns.allocate(xj, bj)
        else:
            self.nbrs, _ = update_or_regrow(self.nl_fns, xj, self.nbrs, bj)
        return self.nbrs

    def prepare(self, x, box):
        x, box = self.system.check_inputs(x, box)
        return jnp.asarray(x), None if box is None else jnp.asarray(box)


def _variance_of_means(columns) -> np.ndarray:
    """Var of each column's mean of ``columns`` [n, m] in sampling order: the sample variance
    / n times the column's statistical inefficiency g, over 1 - g/n (at most 2), as
    ``mean_std_error`` for equal weights."""
    n = len(columns)
    g = _statistical_inefficiencies(columns)
    return columns.var(axis=0, ddof=1) / n * g / np.maximum(1.0 - g / n, 0.5)


def _covariance_gradient(o, do, du, beta):
    """<dO/dtheta> - beta Cov(O, dU/dtheta) and its standard error from frames in sampling
    order: o [n, m], do [n, m, p], du [n, p] -> ([m, p], [m, p]). The standard error is the
    delta method's: the statistical-inefficiency-corrected error of the mean of the
    estimator's per-frame terms dO_i - beta (O_i - <O>)(dU_i - <dU>) (``_variance_of_means``).

    The covariance about the sample means is low by Cov(mean O, mean dU), about g/n of it
    (~3 % for 40 ps of liquid water's density; 17 % for 5 effective samples). Adding back an
    estimate of that term (from the variances of the means of O + dU and O - dU) removed the
    bias on AR(1) series but doubled the spread at 5 effective samples, a worse error at
    every length tried (100-1,000 frames, g = 19); it is left in, and ``n_effective``
    (diagnostics and verdict) says when a series is that short."""
    co, cdu = o - o.mean(axis=0), du - du.mean(axis=0)
    grad, err = np.empty(do.shape[1:]), np.empty(do.shape[1:])
    for k in range(o.shape[1]):  # one observable component at a time: [n, p] in memory
        terms = do[:, k] - beta * co[:, k:k + 1] * cdu
        grad[k] = terms.mean(axis=0)
        err[k] = np.sqrt(_variance_of_means(terms))
    return grad, err


def ensemble_gradient(system, frames, observable, *, temperature: float, boxes=None,
                      params=None, wrt=None, transform=None) -> GradientResult:
    """d<O>/dtheta from equilibrium frames sampled at ``params`` and ``temperature`` (K).

    Args:
        frames: [n, N, 3] nm (real atoms, or all particles); ``boxes`` [n, 3, 3] for NPT
            frames (default: the system's box).
        observable: ``O(positions, box, params)`` -> scalar or array.
        transform: optional f applied to the average (e.g. ``noe_transform``); the gradient
            is then of f(<O>), by the chain rule.

    Frames in sampling order: the standard error accounts for their correlation in time
    (``_covariance_gradient``).
    """
    fp = flat_params(system.params if params is None else params, wrt)
    beta = 1.0 / (BOLTZMANN * float(temperature))
    x_all, b_all = _frames_and_boxes(system, frames, boxes)
    pf = _PerFrame(system, fp)
    phi = fp.phi0

    def o_and_grad(x, box, ph):
        return _OBSERVABLE_AND_GRAD(observable, x, box, fp, ph)

    os_, dos, dus = [], [], []
    for x, box in zip(x_all, b_all, strict=True):
        x, box = pf.prepare(x, box)
        nbrs = pf.neighbors(x, box)
        _, du = pf.energy_and_grad(x, box, phi, nbrs)
        o, do = o_and_grad(x, box, phi)
        os_.append(np.asarray(o))
        dos.append(np.asarray(do))
        dus.append(np.asarray(du))
    o = check_finite(np.stack(os_), "the observable")
    do, du = np.stack(dos), np.stack(dus)
    check_finite(du, "dU/dtheta")
    shape = o.shape[1:]
    o2 = o.reshape(len(o), -1)
    do2 = do.reshape(len(o), o2.shape[1], -1)
    grad, err = _covariance_gradient(o2, do2, du, beta)
    means = [o2.mean(axis=0)]
    value = means[0]
    if transform is not None:
        v = jnp.asarray(value.reshape(shape))
        fval = np.asarray(transform(v))
        jac = np.asarray(jax.jacrev(transform)(v)).reshape(fval.size, value.size)
        grad, err = jac @ grad, np.sqrt((jac ** 2) @ err ** 2)
        value, shape = fval.reshape(-1), fval.shape
    g_ineff = statistical_inefficiency(o)
    n_eff = len(o) / g_ineff
    flat = grad.reshape(shape + (-1,)) if shape else grad.reshape(-1)
    flat_err = err.reshape(flat.shape)
    value = value.reshape(shape) if shape else float(np.asarray(value).reshape(()))
    diag = {"n_frames": len(o), "statistical_inefficiency": g_ineff, "n_effective": n_eff,
            "relative_std_error": float(np.linalg.norm(flat_err)
                                        / max(np.linalg.norm(flat), 1e-300))}
    verdict = statistical_verdict(flat, flat_err, n_eff)
    pytree = fp.to_pytree(flat) if not shape else None
    return GradientResult(value, pytree, flat, fp.indices, flat_err, diag, verdict,
                          "ensemble")


def effective_sample_size(log_weights) -> float:
    """(sum w)^2 / sum w^2 from log weights (host float; see ``reweighting.py``)."""
    return float(reweighting.effective_sample_size(np.asarray(log_weights, np.float64)))


def reduced_potentials(system, frames, params_list, *, temperature: float, boxes=None,
                       pressure: float | None = None):
    """u[k, n] = beta (U(x_n; theta_k) + p V_n) for each parameter set (kJ/mol -> kT)."""
    beta = 1.0 / (BOLTZMANN * float(temperature))
    x_all, b_all = _frames_and_boxes(system, frames, boxes)
    fp = flat_params(system.params)
    pf = _PerFrame(system, fp)
    phis = [flat_params(p).flat for p in params_list]
    u = np.zeros((len(phis), len(x_all)))
    for n, (x, box) in enumerate(zip(x_all, b_all, strict=True)):
        x, box = pf.prepare(x, box)
        nbrs = pf.neighbors(x, box)
        for k, ph in enumerate(phis):
            u[k, n] = float(pf.energy(x, box, ph, nbrs))
        if pressure is not None and box is not None:
            u[:, n] += BAR * float(pressure) * abs(float(np.linalg.det(box)))
    return beta * u


def mbar_reference(u_kn, n_k) -> np.ndarray:
    """[n] reduced energies of the MBAR mixture of K sampled states,
    -log sum_k N_k exp(f_k - u_kn), with the free energies f_k solved by pymbar: frames
    pooled from the K states and reweighted to any new state by
    ``reweighting.exp_weights(u_new, mbar_reference(u_kn, n_k))`` get MBAR's weights (Shirts &
    Chodera, J. Chem. Phys. 129, 124105 (2008)). ``u_kn`` [K, n] reduced energies of every
    frame at every sampled state (frames of state 0 first, ...); ``n_k`` [K] frame counts.
    One state: its own energies."""
    u = np.asarray(u_kn, np.float64)
    n_k = np.asarray(n_k, np.int64)
    if u.ndim != 2 or u.shape[0] != len(n_k) or n_k.sum() != u.shape[1] or n_k.min() < 1:
        raise InputError(f"u_kn {u.shape} must be [K, n] for frame counts {n_k.tolist()}")
    if not np.all(np.isfinite(u)):
        raise InputError("MBAR needs finite reduced energies of every frame at every state")
    if len(n_k) == 1:
        return u[0]
    f_k = np.asarray(_mbar(u, n_k).f_k, np.float64)
    return -logsumexp(np.log(n_k)[:, None] + f_k[:, None] - u, axis=0)


def _mbar(u_kn, n_k):
    """pymbar.MBAR started from BAR's free energies with the robust solver, checked: from
    its default start (all zeros) pymbar 4 can stop far from the solution with only a log
    message (two 256-water states 40 kT apart: f = 48 instead of 40.5)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mbar = _pymbar().MBAR(u_kn, n_k, initialize="BAR", solver_protocol="robust")
    f_k = np.asarray(mbar.f_k, np.float64)
    log_den = logsumexp(np.log(n_k)[:, None] + f_k[:, None] - u_kn, axis=0)
    residual = -logsumexp(-u_kn - log_den, axis=1) - f_k  # constant at the solution
    if not np.all(np.abs(residual - residual[0]) < 1e-6):
        raise GradientError("MBAR's free energies did not converge (self-consistency"
                            f" residuals {np.round(residual - residual[0], 8).tolist()}):"
                            " the states may not overlap; pool fewer or closer ones")
    return mbar


def reweight(system, frames, observable, params_new, *, temperature: float, boxes=None,
             params=None, method: str = "exp", min_ess: float = 50.0, states=None):
    """<O> at ``params_new`` from frames sampled elsewhere, with its error and the effective
    sample size.

    method="exp": frames all sampled at ``params`` (default the system's). method="mbar":
    ``states`` is a list of (params_k, n_k) in the order the frames are concatenated (frames
    of state 0 first, ...); pymbar solves for the free energies.

    Returns a dict: value, std_error, ess, n_frames, log_weights. Raises ReweightingError if
    ess < min_ess.
    """
    x_all, b_all = _frames_and_boxes(system, frames, boxes)
    params = system.params if params is None else params
    if method == "exp":
        sampled = [params]
        n_k = np.array([len(x_all)])
    elif method == "mbar":
        if not states:
            raise InputError("method='mbar' needs states=[(params_k, n_frames_k), ...]")
        sampled = [p for p, _ in states]
        n_k = np.array([int(n) for _, n in states])
        if n_k.sum() != len(x_all):
            raise InputError(f"states list {n_k.sum()} frames but {len(x_all)} were given")
    else:
        raise InputError(f"method must be 'exp' or 'mbar', got {method!r}")
    u = reduced_potentials(system, x_all, sampled + [params_new], temperature=temperature,
                           boxes=b_all)
    u_k, u_new = u[:-1], u[-1]
    o = _observe(observable, x_all, b_all, params_new)
    if method == "exp":
        log_w = np.asarray(reweighting.exp_log_weights(u_new, u_k[0]))
    else:
        mbar = _mbar(u_k, n_k)
        f_k = np.asarray(mbar.f_k)
        log_w = -u_new - logsumexp(np.log(n_k)[:, None] + f_k[:, None] - u_k, axis=0)
        log_w = log_w - logsumexp(log_w)
    ess = effective_sample_size(log_w)
    if ess < min_ess:
        raise ReweightingError(
            f"reweighting by {method.upper()} has only {ess:.1f} effective samples of"
            f" {len(x_all)} (min_ess={min_ess:g}): the new parameters moved too far from the"
            " sampled ones. Re-simulate at the new parameters, take a smaller step, or (MBAR)"
            " add frames from intermediate parameter sets")
    w = np.exp(log_w)
    est = mean_std_error(o, w / w.sum())
    if method == "mbar":
        o2 = o.reshape(len(o), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mbar.compute_expectations(o2[:, 0], u_kn=u_new[None, :])
        err = np.atleast_1d(np.asarray(res["sigma"]))
        if o2.shape[1] > 1:
            err = np.full(o2.shape[1], np.nan)
        shape = o.shape[1:]
        est["std_error"] = err.reshape(shape) if shape else float(err[0])
    return {"value": est["value"], "std_error": est["std_error"], "ess": ess,
            "n_frames": len(x_all), "log_weights": log_w}


def _observe(observable, frames, boxes, params) -> np.ndarray:
    """``observable`` on every frame (host loop), checked finite."""
    boxes = [None] * len(frames) if boxes is None else boxes
    return check_finite(np.stack([
        np.asarray(observable(jnp.asarray(x), None if b is None else jnp.asarray(b), params))
        for x, b in zip(frames, boxes, strict=True)]), "the observable")


def time_vs_ensemble(observable, time_frames, replica_frames, *, time_boxes=None,
                     replica_boxes=None, params=None) -> dict:
    """The time average of ``observable`` over frames of one run (e.g. a ReservoirReporter's)
    against the average over independent replicas' final frames. Returns both means, their
    standard errors, z = difference / combined error, and a verdict (|z| < 3: consistent)."""
    a = _observe(observable, time_frames, time_boxes, params)
    b = _observe(observable, replica_frames, replica_boxes, params)
    if len(b) < 2:
        raise InputError("time_vs_ensemble needs at least 2 replicas")
    a2, b2 = a.reshape(len(a), -1).mean(axis=1), b.reshape(len(b), -1).mean(axis=1)
    time_avg = mean_std_error(a2)
    g, mt, st = time_avg["statistical_inefficiency"], time_avg["value"], time_avg["std_error"]
    me, se = float(b2.mean()), float(b2.std(ddof=1) / np.sqrt(len(b2)))
    z = (mt - me) / max(np.hypot(st, se), 1e-300)
    verdict = ("consistent: time and ensemble averages agree within"
               f" {abs(z):.2g} standard errors" if abs(z) < 3 else
               f"inconsistent ({abs(z):.2g} standard errors apart): the run is not yet"
               " equilibrated or not ergodic on this time scale; run longer or use more"
               " replicas")
    return {"time_mean": mt, "time_std_error": st, "ensemble_mean": me,
            "ensemble_std_error": se, "z": float(z), "verdict": verdict,
            "statistical_inefficiency": g}
