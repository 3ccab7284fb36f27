"""Standard errors of ensemble averages (``gradients.mean_std_error``): checked against the
spread of independent replicas of correlated series, fresh and reweighted."""

from __future__ import annotations

import numpy as np
import pytest

from chronograd.errors import InputError
from chronograd.gradients import mean_std_error, statistical_inefficiency


def _ar1(rng, n_replicas, n, phi):
    """Stationary AR(1) series with unit variance: statistical inefficiency (1+phi)/(1-phi)."""
    x = np.empty((n_replicas, n))
    x[:, 0] = rng.standard_normal(n_replicas)
    noise = rng.standard_normal((n_replicas, n)) * np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def test_standard_error_matches_the_spread_of_replicas():
    rng = np.random.default_rng(20261201)
    phi = 0.9
    series = _ar1(rng, 300, 3000, phi)
    est = [mean_std_error(s) for s in series]
    means = np.array([e["value"] for e in est])
    reported = np.sqrt(np.mean([e["std_error"] ** 2 for e in est]))
    observed = means.std(ddof=1)
    assert 0.85 < reported / observed < 1.18, (reported, observed)
    g = np.mean([e["statistical_inefficiency"] for e in est])
    assert 0.8 * (1 + phi) / (1 - phi) < g < 1.2 * (1 + phi) / (1 - phi)
    # ignoring the correlation (g = 1) would understate the error ~4x
    naive = np.mean([s.std(ddof=1) / np.sqrt(len(s)) for s in series])
    assert observed / naive > 3.5


def test_too_few_effective_samples_are_flagged_and_the_bias_of_short_series_corrected():
    """A series only a few correlation times long measures its autocorrelation around its own
    mean, which lowers every lag: pymbar's g (``corrected=False``) then understates the error
    (AR(1), g = 19: ~0.8x at 100 frames, ~5 effective samples). The corrected g and variance
    (the default) remove that bias, at the price of being slightly conservative (~1.15x), and
    the reported n_effective still says when a series is short (< 20: the liquid runs extend
    until min_effective_samples)."""
    rng = np.random.default_rng(11)
    for n, flagged in ((100, True), (400, False)):
        series = _ar1(rng, 400, n, 0.9)
        est = [mean_std_error(s) for s in series]
        observed = np.std([e["value"] for e in est], ddof=1)
        reported = np.sqrt(np.mean([e["std_error"] ** 2 for e in est]))
        pymbar_g = np.sqrt(np.mean([statistical_inefficiency(s, corrected=False)
                                    * s.var(ddof=1) / n for s in series]))
        assert 0.95 < reported / observed < 1.35, (n, reported / observed)
        if n == 100:
            assert 0.6 < pymbar_g / observed < 0.88, pymbar_g / observed
        assert (np.median([e["n_effective"] for e in est]) < 20) == flagged, n


def test_uncorrected_statistical_inefficiency_is_pymbars():
    from chronograd.gradients.ensemble import _pymbar

    rng = np.random.default_rng(3)
    for n, phi in ((50, 0.5), (400, 0.9), (3000, 0.95), (1000, -0.3)):
        x = _ar1(rng, 1, n, phi)[0]
        want = max(1.0, _pymbar().timeseries.statistical_inefficiency(x))
        assert statistical_inefficiency(x, corrected=False) == pytest.approx(want, rel=1e-10)
        assert statistical_inefficiency(x) >= statistical_inefficiency(x, corrected=False)


def test_reweighted_standard_error_matches_the_spread_of_replicas():
    """Frames of N(0, 1) reweighted to N(lam, 1) (w ~ exp(lam x)): the weighted mean
    estimates lam; its delta-method error times g matches the replicas' spread."""
    rng = np.random.default_rng(7)
    lam = 0.4
    series = _ar1(rng, 300, 3000, 0.8)
    means, errors = [], []
    for s in series:
        w = np.exp(lam * s - np.max(lam * s))
        e = mean_std_error(s, w / w.sum())
        means.append(e["value"])
        errors.append(e["std_error"])
        assert e["n_effective"] < len(s) / e["statistical_inefficiency"]
    means = np.array(means)
    assert abs(means.mean() - lam) < 3 * means.std(ddof=1) / np.sqrt(len(means))
    ratio = np.sqrt(np.mean(np.square(errors))) / means.std(ddof=1)
    assert 0.8 < ratio < 1.25, ratio


def test_pooled_runs_by_mbar_match_pymbar_and_the_spread_of_replicas():
    """Three harmonic states u_k = (x - mu_k)^2 / 2, one AR(1) run (g = 9) of 200 frames
    each, pooled and reweighted to mu = 0.3 through ``mbar_reference``: the weighted mean is
    pymbar's MBAR expectation, it is 0.3 within its error, and ``mean_std_error`` with the
    runs as segments reports an error within 0.8-1.3x of 300 replicas' spread (measured
    1.00). Taken as one series, the steps between the runs' means pose as a long
    correlation time (3.8x)."""
    from pymbar import MBAR

    from chronograd.gradients.ensemble import mbar_reference
    from chronograd.gradients.reweighting import exp_weights

    rng = np.random.default_rng(3)
    mu, n, target = np.array([-0.5, 0.2, 0.8]), 200, 0.3
    means, errors, one = [], [], []
    for r in range(300):
        x = np.concatenate([m + _ar1(rng, 1, n, 0.8)[0] for m in mu])
        u_kn = 0.5 * (x[None, :] - mu[:, None]) ** 2
        u_new = 0.5 * (x - target) ** 2
        w = np.asarray(exp_weights(u_new, mbar_reference(u_kn, [n] * 3)))
        if r == 0:
            mbar = MBAR(u_kn, np.array([n] * 3))
            ref = float(np.asarray(mbar.compute_expectations(x, u_kn=u_new[None])["mu"])[0])
            assert w @ x == pytest.approx(ref, rel=1e-8)
        e = mean_std_error(x, w, segments=[n] * 3)
        means.append(e["value"])
        errors.append(e["std_error"])
        one.append(mean_std_error(x, w)["std_error"])
    means = np.array(means)
    assert abs(means.mean() - target) < 3 * means.std(ddof=1) / np.sqrt(len(means))
    ratio = np.sqrt(np.mean(np.square(errors))) / means.std(ddof=1)
    assert 0.8 < ratio < 1.3, ratio
    assert np.sqrt(np.mean(np.square(one))) / means.std(ddof=1) > 1.3 * ratio
    # constant offsets between the states (tens of kT, as between liquid boxes) leave the
    # weights as they are (pymbar's default start stops short of the solution there)
    shifted = mbar_reference(u_kn + np.array([0.0, 40.0, 80.0])[:, None], [n] * 3)
    np.testing.assert_allclose(np.asarray(exp_weights(u_new, shifted)), w, rtol=1e-6)
    with pytest.raises(InputError, match="summing to 600"):
        mean_std_error(x, w, segments=[n, n])
    with pytest.raises(InputError, match=r"u_kn \(3, 600\) must be \[K, n\]"):
        mbar_reference(u_kn, [n, n])


def test_vector_series_and_bad_weights():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 3))
    e = mean_std_error(x)
    assert e["value"].shape == (3,) and e["std_error"].shape == (3,)
    g = e["statistical_inefficiency"]
    np.testing.assert_allclose(e["std_error"], x.std(axis=0, ddof=1) / np.sqrt(500) *
                               np.sqrt(g / (1 - g / 500)))
    with pytest.raises(InputError, match="summing to 1"):
        mean_std_error(x[:, 0], np.ones(500))
    with pytest.raises(InputError, match="500 finite numbers"):
        mean_std_error(x[:, 0], np.full(499, 1 / 499))


class _ScriptedEvaluator:
    """An Evaluator stand-in: one residual whose loss at each new point, the sample it came
    from, and the loss noise are scripted."""

    def __init__(self, points):
        self.points = list(points)  # (loss, sample id, noise) per evaluation, in order
        self.current = None

    def residuals_and_jacobian(self, phi):
        loss, sample, noise = self.points.pop(0)
        self.current = (sample, noise)
        return np.array([np.sqrt(loss)]), np.array([[1.0]]), [loss]

    def samples(self):
        return (self.current[0],)

    def noise(self, phi):
        return self.current[1]


@pytest.mark.parametrize("new_loss, new_sample, accepted", [
    (0.95, 1, True),    # the same sample: losses compare exactly
    (0.95, 2, False),   # a fresh sample: 0.05 is within the noise (hypot(0.1, 0.1))
    (0.70, 2, True),    # a fresh sample, a decrease beyond the noise
])
def test_levenberg_marquardt_accepts_only_decreases_beyond_the_noise(new_loss, new_sample,
                                                                     accepted):
    from chronograd.fit.optimizers import levenberg_marquardt

    opt = levenberg_marquardt(max_tries=3)
    tries = [(new_loss, new_sample, 0.1)] * 3
    ev = _ScriptedEvaluator([(1.0, 1, 0.1)] + tries)
    state, info = opt.step(opt.init(np.zeros(1)), ev)
    moved = bool(np.any(state["phi"] != 0))
    assert moved == accepted
    assert info["loss"] == pytest.approx(new_loss if accepted else 1.0)
    assert info["loss_noise"] == pytest.approx(0.1)
    assert state["samples"] == ((new_sample,) if accepted else (1,))


def test_the_fit_stops_when_changes_are_within_the_noise():
    from chronograd.fit.runner import CONVERGENCE_DEFAULTS, converged

    opts = dict(CONVERGENCE_DEFAULTS)
    log = [{"iteration": k, "loss": v, "loss_noise": 0.05}
           for k, v in enumerate([2.0, 1.0, 0.98, 1.01])]
    assert "within its statistical noise" in converged(log, 1.0, opts)
    log[-1]["loss"] = 0.8  # a real decrease: go on
    assert converged(log, 1.0, opts) is None
    for e in log:
        del e["loss_noise"]  # deterministic targets: the relative-change rule only
    log[-1]["loss"] = 1.01
    assert converged(log, 1.0, opts) is None


def test_ensemble_gradient_error_matches_the_spread_of_replicas():
    """The ensemble gradient's standard error (delta method, each term's statistical
    inefficiency) against 400 replicas of correlated series with -beta Cov = -1 (AR(1),
    g = 19, 400 frames: ~20 effective samples); at 100 frames (~5 effective samples) the
    covariance about the sample means is low by about g/n (the documented bias)."""
    from chronograd.gradients.ensemble import _covariance_gradient

    rng = np.random.default_rng(5)
    for n in (400, 100):
        x = _ar1(rng, 400, n, 0.9)
        y = x + 0.5 * _ar1(rng, 400, n, 0.5)  # Cov(x, y) = 1
        got, err = [], []
        for xs, ys in zip(x, y, strict=True):
            g, e = _covariance_gradient(xs[:, None], np.zeros((n, 1, 1)), ys[:, None], 1.0)
            got.append(g[0, 0])
            err.append(e[0, 0])
        got = np.array(got)
        bias = got.mean() + 1.0
        if n == 400:
            assert abs(bias) < 0.1
            assert 0.85 < np.sqrt(np.mean(np.square(err))) / got.std(ddof=1) < 1.2
        else:
            assert 0.1 < bias < 0.25
