"""The liquid (density, enthalpy of vaporization) fitting target on Sage TIP3P water:
its gradient against the ensemble fluctuation formula and against central differences,
reweighting when theta moved little and re-simulation when the effective sample is too
small, and config errors. The full fit (examples/fit/water_liquid.toml) is a slow test."""

from __future__ import annotations

import json
import shutil
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
                          gas_production=1000, gas_every=50, initial_density=1.0, min_ess=0.5)
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
    # water's sigma moves the density strongly; the sign is physical (bigger O, less dense)
    labels = [parameter_labels(ff.params, ff.row_info)[i] for i in fp.indices]
    assert jac["density"][["sigma" in lab for lab in labels].index(True)] < 0


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
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\nhvap = 44.0\nmin_ess = 2.0',
                                         parallel=""))
    with pytest.raises(InputError, match="min_ess is a fraction"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\nhvap = 44.0',
                                         parallel='[parallel]\ncluster = "local"'))
    with pytest.raises(InputError, match=r"\[parallel\] cluster: target 'water' keeps"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\nhvap = 44.0\n'
                                               'hvap_std_error = 0.0', parallel=""))
    with pytest.raises(InputError, match="hvap_std_error must be > 0"):
        run_fit(load_config(cfg), progress=False)
    cfg = _write(tmp_path, LIQUID.format(extra='smiles = "O"\nhvap = 44.0\n'
                                               'max_production = 15000', parallel=""))
    with pytest.raises(InputError, match=r"max_production \(15000\) must be a multiple"):
        run_fit(load_config(cfg), progress=False)
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.slow
def test_water_fit_reweights_resimulates_and_moves_towards_experiment(tmp_path):
    """examples/fit/water_liquid.toml: Sage TIP3P's O sigma and epsilon against the
    experimental density and H_vap of water at 298.15 K, 1 atm; stopped and resumed."""
    work = tmp_path / "fit"
    work.mkdir()
    shutil.copy(EXAMPLE, work / "water_liquid.toml")
    text = (work / "water_liquid.toml").read_text()
    text = text.replace('directory = "../../out/fit-water-liquid"', 'directory = "out"')
    (work / "water_liquid.toml").write_text(text)
    cfg = load_config(work / "water_liquid.toml")
    first = run_fit(cfg, progress=False, stop_after=2)
    assert not first["finished"]
    summary = run_fit(cfg, progress=False, resume=True)
    log = [json.loads(line) for line in (work / "out" / "log.jsonl").read_text().splitlines()]
    sims = [e["sampling"]["water"]["simulations"] for e in log]
    ess = [e["sampling"]["water"]["ess_fraction"] for e in log]
    print("simulations", sims, "ess", ess, "loss", [e["loss"] for e in log])
    assert sims[-1] >= 2  # re-simulated at least once after the first sample
    assert any(e < 1.0 for e in ess)  # and reweighted in between
    m0, m1 = summary["metrics_initial"]["water"]["all"], summary["metrics_final"]["water"]["all"]
    print(m0, m1)
    err0 = abs(m0["hvap"] - 43.98) / 3 + abs(m0["density"] - 0.99705) / 0.03
    err1 = abs(m1["hvap"] - 43.98) / 3 + abs(m1["density"] - 0.99705) / 0.03
    assert err1 < err0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="5 ps runs do not resolve the barostat's volume"
                   " correlation time: measured, the density's reported error is ~3x below"
                   " the replicas' spread (issue 20: size the runs, then remove this mark)")
def test_standard_errors_match_the_spread_of_replicas():
    """Eight simulations of one water box with different seeds, each continuing from the
    last configuration after its own equilibration (the first from an equilibrated start):
    each reports its density and H_vap with a standard error; their RMS is within a factor
    1.5 of the replicas' observed spread."""
    ff = cg.ForceField(FF)
    target = LiquidTarget(ff, smiles="O", n_molecules=256, temperature=T, density=0.99705,
                          hvap=43.98, equilibration=1000, production=2500, every=25,
                          gas_production=2500, gas_every=25, initial_density=1.0, seed=11)
    target.prepare(ff.params)  # from the lattice: the equilibrated start
    values, errors = {"density": [], "hvap": []}, {"density": [], "hvap": []}
    for _ in range(8):
        target._simulate(ff.params)  # seed + n_simulations differs
        est = target.estimates(ff.params, target.prepare(ff.params))
        for k in values:
            values[k].append(est[k][0])
            errors[k].append(est[k][1])
    for k in values:
        observed = np.std(values[k], ddof=1)
        reported = np.sqrt(np.mean(np.square(errors[k])))
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
