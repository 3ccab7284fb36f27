"""The liquid (density, enthalpy of vaporization) fitting target on Sage TIP3P water:
its gradient against the ensemble fluctuation formula and against central differences,
reweighting when theta moved little and re-simulation when the effective sample is too
small, and config errors. The full fit (examples/fit/water_liquid.toml) is a slow test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import chronograd as cg
from chronograd import observables as obs
from chronograd.errors import InputError
from chronograd.fit import load_config, run_fit
from chronograd.fit.liquid import LiquidTarget
from chronograd.gradients import ensemble_gradient, flat_params, parameter_labels

FF = "openff-2.2.1.offxml"
T = 298.15
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fit" / "water_liquid.toml"


@pytest.fixture(scope="module")
def water():
    ff = cg.ForceField(FF)
    target = LiquidTarget(ff, smiles="O", n_molecules=256, temperature=T, density=0.99705,
                          hvap=43.98, equilibration=500, production=1000, every=50,
                          gas_production=1000, gas_every=50, initial_density=1.0, min_ess=0.5,
                          min_effective_samples=0)  # 2 ps samples: for gradients, not errors
    wrt = ff.select(ids=["n-tip3p-O"], attributes={"sigma", "epsilon"})
    fp = flat_params(ff.params, wrt)
    data = target.prepare(ff.params)
    assert target.n_simulations == 1
    return ff, target, fp, data


@pytest.mark.slow
def test_gradient_at_the_sampled_parameters_is_the_fluctuation_formula(water):
    ff, target, fp, data = water
    props = jax.jit(lambda ph: target.properties(fp.params(ph), data))
    jac = jax.jacrev(props)(fp.phi0)
    s = target.sample
    d_rho = ensemble_gradient(target.liquid, s["frames"], obs.density(target.liquid.masses),
                              temperature=T, boxes=s["boxes"], wrt=fp.indices)
    d_ul = ensemble_gradient(target.liquid, s["frames"], obs.potential_energy(target.liquid),
                             temperature=T, boxes=s["boxes"], wrt=fp.indices)
    d_ug = ensemble_gradient(target.gas, s["gas_frames"], obs.potential_energy(target.gas),
                             temperature=T, wrt=fp.indices)
    np.testing.assert_allclose(jac["density"], d_rho.flat, rtol=1e-8)
    np.testing.assert_allclose(jac["hvap"], d_ug.flat - d_ul.flat / 256, rtol=1e-8)
    # 20 frames of 2 ps hold ~2 effective samples of the density (measured: d rho/d sigma
    # +0.16 +- 4.5 g/cm^3/nm, statistical inefficiency 10): the sign of the effect is not
    # in this sample, and the estimator must say so rather than look confident. The sign
    # itself is checked where a run resolves it (test_gradients_liquid: 100 ps against
    # re-simulated finite differences; below: sigma + 5 % re-simulated is less dense).
    labels = [parameter_labels(ff.params, ff.row_info)[i] for i in fp.indices]
    k = ["sigma" in lab for lab in labels].index(True)
    assert d_rho.std_error[k] > 0
    assert d_rho.verdict.startswith("untrustworthy"), d_rho.verdict


@pytest.mark.slow
def test_reweighted_estimate_gradient_matches_central_differences(water):
    ff, target, fp, data = water
    phi = fp.phi0 * np.array([1.002, 0.999])  # a reweighted point, not the sampled one
    f = jax.jit(lambda ph: target.loss(fp.params(ph), data))
    g = np.asarray(jax.grad(f)(jnp.asarray(phi)))
    h = 1e-6 * np.abs(fp.phi0)
    fd = np.array([(f(phi + h[i] * e) - f(phi - h[i] * e)) / (2 * h[i])
                   for i, e in enumerate(np.eye(2))])
    np.testing.assert_allclose(g, fd, rtol=1e-5)


@pytest.mark.slow
def test_reweights_small_moves_and_resimulates_large_ones(water):
    ff, target, fp, _ = water
    n0, before = target.n_simulations, target.sample["frames"]
    target.prepare(fp.params(fp.phi0 * np.array([1.0005, 1.0])))
    assert target.n_simulations == n0 and target.last_ess >= target.min_ess
    assert target.sample["frames"] is before
    far = fp.params(fp.phi0 * np.array([1.0, 1.05]))  # sigma + 5 %: no overlap left
    assert target._ess(far) < target.min_ess
    data = target.prepare(far)
    assert target.n_simulations == n0 + 1 and target.last_ess == 1.0
    # freshly sampled at `far`: uniform weights, and the estimate is the plain average
    rho = float(target.properties(far, data)["density"])
    assert rho == pytest.approx(float(np.mean(np.asarray(data[3]))), rel=1e-12)
    assert rho < 0.99  # a 5 % larger water oxygen gives a visibly less dense liquid


@pytest.mark.slow
def test_pooled_simulations_are_reweighted_together_by_mbar():
    """pool = 2: after three simulations the sample holds the last two runs, every frame's
    energy at both states, and reference energies whose weights are MBAR's: the pooled
    density at a point between them equals ``reweight(method="mbar")`` (pymbar) and rests on
    more effective samples than one run holds (measured 37 of 40 frames), and its gradient is
    the central difference."""
    from chronograd.gradients.ensemble import reweight

    ff = cg.ForceField(FF)
    target = LiquidTarget(ff, smiles="O", n_molecules=256, temperature=T, density=0.99705,
                          hvap=43.98, equilibration=500, production=1000, every=50,
                          gas_production=1000, gas_every=50, initial_density=1.0,
                          min_effective_samples=0, pool=2)
    wrt = ff.select(ids=["n-tip3p-O"], attributes={"sigma", "epsilon"})
    fp = flat_params(ff.params, wrt)
    phis = [fp.phi0 * np.array([1.0, f]) for f in (1.0, 0.999, 1.0015)]  # epsilon, sigma
    for phi in phis:
        target._simulate(fp.params(phi))
    s = target.sample
    assert target.n_simulations == 3 and s["segments"] == [20, 20] and len(s["frames"]) == 40
    for k, phi in enumerate(phis[1:]):  # u_kn: every pooled frame at every pooled state
        u, ug = target._at(fp.params(phi), s["frames"], s["boxes"], s["gas_frames"])
        np.testing.assert_allclose(s["u_kn_liquid"][k], u, rtol=1e-10)
        np.testing.assert_allclose(s["u_kn_gas"][k], ug, rtol=1e-10)
    mid = fp.phi0 * np.array([1.0, 1.0003])
    data = target.prepare(fp.params(mid))
    assert target.n_simulations == 3 and target.last_ess > 1.0  # more than one run's worth
    rho = float(target.properties(fp.params(mid), data)["density"])
    ref = reweight(target.liquid, s["frames"], lambda x, b, p: target._density(x, b),
                   fp.params(mid), temperature=T, boxes=s["boxes"], method="mbar",
                   states=[(fp.params(phi), 20) for phi in phis[1:]], min_ess=1.0)
    assert rho == pytest.approx(ref["value"], rel=1e-9)
    f = jax.jit(lambda ph: target.properties(fp.params(ph), data)["density"])
    g = np.asarray(jax.grad(f)(jnp.asarray(mid)))
    h = 1e-6 * np.abs(fp.phi0)
    fd = np.array([(f(mid + h[i] * e) - f(mid - h[i] * e)) / (2 * h[i])
                   for i, e in enumerate(np.eye(2))])
    np.testing.assert_allclose(g, fd, rtol=1e-5)
    assert target.metrics(fp.params(mid))["all"]["pooled_simulations"] == 2


def _write(tmp_path, text):
    p = tmp_path / "fit.toml"
    p.write_text(text)
    return p


LIQUID = """[forcefield]
file = "openff-2.2.1.offxml"
[[parameters]]
ids = ["n-tip3p-O"]
attributes = ["sigma"]
[[targets]]
name = "water"
type = "liquid"
{extra}
[optimizer]
method = "lbfgs"
[output]
directory = "out"
{parallel}
"""


HVAP = 'hvap = {value = "44.0 * kJ/mol", reference = "CRC Handbook"}'


def test_liquid_config_errors(tmp_path):
    cfg = _write(tmp_path, LIQUID.format(extra="density = 0.997", parallel=""))
    with pytest.raises(InputError, match=r"fit.toml, line 6: \[\[targets\]\] #1: .*smiles"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\ndensity = 0.997\nrecords = []',
                                         parallel=""))
    with pytest.raises(InputError, match=r"line 11: \[\[targets\]\] #1 records: not an option"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"', parallel=""))
    with pytest.raises(InputError, match="density and/or hvap"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + HVAP + '\nmin_ess = 2.0',
                                         parallel=""))
    with pytest.raises(InputError, match="min_ess is a fraction"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + HVAP,
                                         parallel='[parallel]\ncluster = "local"'))
    with pytest.raises(InputError, match=r"\[parallel\] cluster: target 'water' keeps"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + HVAP + '\n'
                                               'hvap_std_error = 0.0', parallel=""))
    with pytest.raises(InputError, match="hvap_std_error must be > 0"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + HVAP + '\n'
                                               'max_production = 15000', parallel=""))
    with pytest.raises(InputError, match=r"max_production \(15000\) must be a multiple"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + HVAP + '\npool = 0',
                                         parallel=""))
    with pytest.raises(InputError, match="pool counts simulations, an integer >= 1; got 0"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + HVAP + '\nprecision = "half"',
                                         parallel=""))
    with pytest.raises(InputError, match="precision must be one of double, mixed, got 'half'"):
        run_fit(load_config(cfg), progress=False)
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("value, match", [
    ("hvap = 44.0", r"line 10: \[\[targets\]\] #1 hvap: an experimental value needs its units"
                    r" and a reference; write hvap = \{value = \"43.98 \* kJ/mol\""),
    ('hvap = {value = "44.0 * kJ/mol"}', r"#1 hvap: no reference for the experimental value"),
    ('hvap = {value = "44.0", reference = "CRC"}', r"#1 hvap: .*dimension"),
    ('density = {value = 0.997, reference = "CRC"}', r"#1 density: the value needs units"),
    ('density = {value = "0.997 * g/mL", reference = "CRC", error = 1}',
     r"#1 density: unknown key 'error'"),
])
def test_experimental_values_need_units_and_references(tmp_path, value, match):
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\n' + value, parallel=""))
    with pytest.raises(InputError, match=match):
        run_fit(load_config(cfg), progress=False)
    assert not (tmp_path / "out").exists()


def test_experimental_values_in_other_units_are_converted(tmp_path):
    from chronograd.fit.build import build_objective

    extra = ('smiles = "O"\nn_molecules = 8\n'
             'density = {value = "997.05 * kg/meter**3", reference = "Kell 1975"}\n'
             'hvap = {value = "10.5115 * kcal/mol", reference = "CRC Handbook"}')
    _, obj = build_objective(load_config(_write(tmp_path, LIQUID.format(extra=extra,
                                                                          parallel=""))))
    t = obj.targets[0]
    assert t.exp["density"] == pytest.approx(0.99705, rel=1e-12)
    assert t.exp["hvap"] == pytest.approx(43.98, rel=1e-4)
    assert t.references == {"density": "Kell 1975", "hvap": "CRC Handbook"}


def combined_error(values, exp):
    """The issue's measure |dH_vap| / 3 kJ/mol + |d rho| / 0.03 g/mL and its standard error
    from the estimates' standard errors."""
    e = abs(values["hvap"][0] - exp["hvap"]) / 3 + abs(values["density"][0] - exp["density"]) \
        / 0.03
    return e, float(np.hypot(values["hvap"][1] / 3, values["density"][1] / 0.03))


@pytest.mark.slow
def test_water_fit_improves_water_beyond_the_validation_errors(tmp_path):
    """examples/fit/water_liquid.toml: Sage TIP3P's O sigma and epsilon against the
    experimental density and H_vap of water at 298.15 K, 1 atm; stopped and resumed. The fit
    is judged by its fresh validation runs: the combined error must fall by more than twice
    its standard error; when a validation cannot resolve the change, the validation is run
    again, longer (up to 4x), rather than asserting on noise. ``CHRONOGRAD_TEST_SEED`` (make
    test-slow SEED=n) changes every simulation's seed."""
    seed = int(os.environ.get("CHRONOGRAD_TEST_SEED", "0"))
    work = tmp_path / "fit"
    work.mkdir()
    text = EXAMPLE.read_text().replace('directory = "../../out/fit-water-liquid"',
                                       'directory = "out"')
    text = text.replace("min_ess = 0.5", f"min_ess = 0.5\nseed = {seed}")
    assert f"seed = {seed}" in text
    (work / "water_liquid.toml").write_text(text)
    cfg = load_config(work / "water_liquid.toml")
    # stopped after the first iteration: the fit may converge (within noise) at the second
    first = run_fit(cfg, progress=False, stop_after=1)
    assert not first["finished"]
    summary = run_fit(cfg, progress=False, resume=True)
    log = [json.loads(line) for line in (work / "out" / "log.jsonl").read_text().splitlines()]
    sampling = [e["sampling"]["water"] for e in log]
    sims = [s["simulations"] for s in sampling]
    evaluations = log[-1]["evaluations"]  # cumulative
    print("simulations", sims, "ess", [s["ess_fraction"] for s in sampling], "pooled",
          [s["pooled"] for s in sampling], "evaluations", evaluations, "loss",
          [e["loss"] for e in log])
    assert sims[-1] >= 2  # re-simulated at least once after the first sample
    # and reweighted in between: more objective evaluations (LM trial steps) than
    # simulations, and a pool's frames weighted unevenly (ess_fraction counts the latest
    # run's frames, so a pool of k runs reweighted to a new theta stays below k)
    assert evaluations["value"] + evaluations["jacobian"] > sims[-1]
    assert any(s["ess_fraction"] < s["pooled"] - 1e-6 for s in sampling)
    m1 = summary["metrics_final"]["water"]["all"]
    exp = {k: m1[f"{k}_experiment"] for k in ("density", "hvap")}
    assert m1["density_reference"].startswith("Kell")
    v = summary["validation"]["water"]
    (e0, s0), (e1, s1) = combined_error(v["before"], exp), combined_error(v["after"], exp)
    production = v["after"]["production"]
    if e0 - e1 <= 2 * np.hypot(s0, s1):  # not resolved: validate again, longer
        from chronograd.fit.build import build_objective
        from chronograd.forcefield import ForceField

        ff, obj = build_objective(cfg)
        target = obj.targets[0]
        fitted = ForceField(str(work / "out" / summary["forcefield"])).params
        while e0 - e1 <= 2 * np.hypot(s0, s1) and production < 4 * v["after"]["production"]:
            production *= 2
            target.validation_production = production
            e0, s0 = combined_error(target.validate(ff.params), exp)
            e1, s1 = combined_error(target.validate(fitted), exp)
    print(f"validation ({production} steps): combined error {e0:.3f} +- {s0:.3f} ->"
          f" {e1:.3f} +- {s1:.3f}")
    assert e0 - e1 > 2 * np.hypot(s0, s1)


@pytest.mark.slow
def test_standard_errors_match_the_spread_of_replicas():
    """Thirty-two simulations of one water box with different seeds (CHRONOGRAD_TEST_SEED
    shifts them), each continuing from the last configuration after its own 5 ps
    equilibration (the first from an equilibrated start), each extended in 10 ps pieces until
    its series hold 20 effective samples (the default min_effective_samples; ~20 ps, at most
    40 ps): the RMS of the reported standard errors is within a factor 1.5 of the replicas'
    observed spread, for the density and for H_vap. The spread of n replicas is itself
    uncertain (chi-square, n - 1 degrees of freedom), so calibrated errors fail the factor 1.5
    by chance, per property, 15 % of the time with eight replicas, 4 % with sixteen (seed 0
    gave 1.72 for the density with eight, then 0.65 for H_vap with sixteen; docs/fitting.md)
    and 0.3 % with thirty-two. The dynamics run in mixed precision (float32 forces, float64
    state; the estimates' energies in float64) to pay for thirty-two: what is checked is the
    estimator on a liquid's correlated series, not the integrator's rounding.
    (With fixed 5 ps runs, ~6 effective samples, the density's was 1.5-3x too small.)"""
    ff = cg.ForceField(FF)
    seed = 11 + 100 * int(os.environ.get("CHRONOGRAD_TEST_SEED", "0"))
    target = LiquidTarget(ff, smiles="O", n_molecules=256, temperature=T, density=0.99705,
                          hvap=43.98, equilibration=2500, production=5000, every=25,
                          max_production=20000, gas_production=1000, gas_every=50,
                          initial_density=1.0, seed=seed, precision="mixed")
    target.prepare(ff.params)  # from the lattice: the equilibrated start
    values, errors = {"density": [], "hvap": []}, {"density": [], "hvap": []}
    short = 0
    n_replicas = 32
    for _ in range(n_replicas):
        target._simulate(ff.params)  # seed + n_simulations differs
        short += not target.sampling["reached"]  # capped at 40 ps short of 20 (warned)
        est = target.estimates(ff.params, target.prepare(ff.params))
        for k in values:
            values[k].append(est[k][0])
            errors[k].append(est[k][1])
    for k in values:
        observed = np.std(values[k], ddof=1)
        reported = np.sqrt(np.mean(np.square(errors[k])))
        print(k, "reported", reported, "observed", observed, "pooled",
              np.mean(values[k]), "+-", observed / np.sqrt(len(values[k])), values[k],
              f"({short} of {n_replicas} runs capped short of 20 effective samples)")
        assert 1 / 1.5 < reported / observed < 1.5, (k, reported, observed, values[k])


@pytest.mark.slow
def test_requested_standard_errors_extend_sampling_or_warn(water):
    ff, target, fp, _ = water
    target.requested, target.max_production = {"density": 1e-6}, 2000
    target.sample = None
    with pytest.warns(UserWarning, match="requested standard errors were not reached"):
        data = target.prepare(ff.params)
    s = target.sampling
    assert not s["reached"] and s["production"] == 2000 and s["density_std_error"] > 1e-6
    assert "max_production = 2000" in target.metrics(ff.params)["all"]["warning"]
    assert len(data[0]) == 2 * (1000 // 50)  # two chunks of frames
    target.requested, target.sample = {"density": 0.5, "hvap": 5.0}, None
    target.prepare(ff.params)
    assert target.sampling["reached"] and target.sampling["production"] == 1000
    # residuals use sqrt(denominator^2 + standard error^2)
    data = target.prepare(ff.params)
    est = target.estimates(ff.params, data)
    r = np.asarray(target.residuals(ff.params, data))
    want = [np.sqrt(0.5) * (est[k][0] - target.exp[k]) / np.hypot(target.den[k], est[k][1])
            for k in ("density", "hvap")]
    np.testing.assert_allclose(r, want, rtol=1e-10)
    target.requested, target.max_production = {}, 4000
