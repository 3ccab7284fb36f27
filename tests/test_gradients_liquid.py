"""Ensemble gradients of <U> and of the density of liquid water (Sage TIP3P, rigid, PME,
NPT at 300 K and 1 bar) against finite differences of re-simulated averages (slow).

The water-oxygen sigma is moved by +-1 %; both runs start from the same equilibrated state
with the same key (matched seeds; CHRONOGRAD_TEST_SEED shifts the keys). The ensemble
gradient is evaluated from each run's own frames and the two are averaged (the gradient at
the centre to O(h^2)); every error bar is a standard error from the data (``mean_std_error``
and the ensemble gradient's delta method, both with the statistical inefficiency). 100 ps
per side: at 40 ps the density has ~5-10 effective samples and the errors themselves are
uncertain by ~30 % (two 40 ps runs: 1.9 and 4.6 reported standard errors apart; five 40 ps
pieces of a 200 ps pair spread 1.5x their reported finite-difference error; RESULTS
"liquid-gradient", docs/gradients.md)."""

import os

import jax
import numpy as np
import pytest

import chronograd as cg
from chronograd import observables as obs
from chronograd.dynamics import langevin
from chronograd.dynamics.barostat import monte_carlo_barostat
from chronograd.dynamics.reporters import ReservoirReporter
from chronograd.gradients import ensemble_gradient, flat_params, mean_std_error
from chronograd.topology.boxes import water_box

pytestmark = pytest.mark.slow
T, P = 300.0, 1.0
REL_STEP = 0.01
EQUIL, PROD, EVERY = 5000, 50000, 100  # 2 fs steps: 10 ps + 100 ps, a frame every 0.2 ps
SEED = 100 * int(os.environ.get("CHRONOGRAD_TEST_SEED", "0"))  # keys SEED and SEED + 1


def mean_and_error(values):
    e = mean_std_error(np.asarray(values))
    return e["value"], e["std_error"]


@pytest.fixture(scope="module")
def runs():
    ff = cg.ForceField("openff-2.2.1.offxml")
    mols, pos, box = water_box(2.0)
    system = ff.create_system(mols, box=box)
    wrt = ff.select(ids=["n-tip3p-O"], attributes={"sigma"})
    fp = flat_params(ff.params, wrt)
    x = cg.minimize(system, pos, box, tolerance=50.0).positions
    integ = langevin(system, timestep=0.002, temperature=T, friction=1.0)
    baro = monte_carlo_barostat(integ, pressure=P, temperature=T, frequency=25)
    start = cg.simulate(integ, integ.init(x, key=jax.random.key(SEED), temperature=T),
                        EQUIL, barostat=baro)
    out = {}
    for sign in (-1, 1):
        phi = fp.phi0 * (1 + sign * REL_STEP)
        params = fp.params(phi)
        s = start._replace(key=jax.random.key(SEED + 1))
        s = cg.simulate(integ, s, EQUIL, params=params, barostat=baro)
        rep = ReservoirReporter(PROD // EVERY, every=EVERY)
        cg.simulate(integ, s, PROD, params=params, barostat=baro, reporters=[rep])
        order = np.argsort(rep.steps)
        frames = np.stack(rep.frames)[order]
        boxes = np.stack(rep.boxes)[order]
        out[sign] = (params, frames, boxes, float(phi[0]))
    return system, wrt, out


@pytest.mark.parametrize("which", ["potential_energy", "density"])
def test_ensemble_gradient_equals_finite_difference_of_resimulated_averages(runs, which):
    system, wrt, out = runs
    observable = (obs.potential_energy(system) if which == "potential_energy"
                  else obs.density(system.masses))
    averages, grads = {}, {}
    for sign, (params, frames, boxes, _) in out.items():
        values = [float(observable(f, b, params)) for f, b in zip(frames, boxes, strict=True)]
        averages[sign] = mean_and_error(values)
        grads[sign] = ensemble_gradient(system, frames, observable, temperature=T,
                                        boxes=boxes, params=params, wrt=wrt)
    h2 = out[1][3] - out[-1][3]
    fd = (averages[1][0] - averages[-1][0]) / h2
    fd_err = np.hypot(averages[1][1], averages[-1][1]) / h2
    ens = 0.5 * (grads[1].flat[0] + grads[-1].flat[0])
    ens_err = 0.5 * np.hypot(grads[1].std_error[0], grads[-1].std_error[0])
    print(f"{which}: ensemble {ens:.5g} +- {ens_err:.2g}, finite difference {fd:.5g} +-"
          f" {fd_err:.2g} per nm of sigma")
    assert abs(fd) > 3 * fd_err and abs(ens) > 3 * ens_err  # both resolve the effect
    assert abs(ens - fd) < 3 * np.hypot(ens_err, fd_err)
