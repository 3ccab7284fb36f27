"""Condensed-phase fitting target: liquid density and enthalpy of vaporization.

The target keeps a sample of NPT liquid frames (and gas-phase frames of one molecule) drawn
at some parameters theta_s. At the parameters theta the optimizer asks about, the averages
are the reweighted (Zwanzig/EXP) estimates

    <O>_theta = sum_i w_i O_i,   w = softmax(-beta (U_theta(x_i) - U_s(x_i)))

(in NPT the p V term is the same at both theta and cancels). This is an ordinary JAX
function of theta given the frames, so its gradient is exact for the estimator; at
theta = theta_s it is the fluctuation formula <dO> - beta (<O dU> - <O><dU>) that
``chronograd.gradients.ensemble_gradient`` evaluates (the tests check both).

Before every evaluation, ``prepare(theta)`` (host side) computes the effective sample size
(sum w)^2 / sum w^2 of the stored frames at theta. If it is at least ``min_ess`` (a fraction
of the frames), the stored sample is reweighted; otherwise the liquid and the gas are
re-simulated at theta (continuing from the last configuration) and the new sample replaces
the old one. The sample is the target's state: ``get_state``/``set_state`` put it into the
fit checkpoint, so a resumed fit continues with the same frames.

    density = <M / V>                                   (g/mL)
    H_vap   = <U_gas> - <U_liquid> / N + R T            (kJ/mol, per molecule)
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from chronograd import observables
from chronograd.errors import InputError
from chronograd.gradients.reweighting import effective_sample_size, exp_log_weights, exp_weights
from chronograd.units import BOLTZMANN


class LiquidTarget:
    """Density and enthalpy of vaporization of a neat liquid against experiment.

    Args:
        ff: the ForceField.
        smiles: the molecule (SMILES).
        n_molecules: molecules in the liquid box.
        temperature: K; pressure: bar.
        density, hvap: experimental values (g/mL, kJ/mol); give one or both.
        density_denominator, hvap_denominator: residual scales (ForceBalance's defaults,
            0.03 g/mL and 3 kJ/mol).
        weight: overall weight.
        timestep (ps), friction (1/ps), equilibration, production, every (steps): the
            liquid runs; gas_production/gas_every for the single molecule in vacuum.
        min_ess: re-simulate when the effective sample size falls below this fraction of
            the frames.
        seed: random seed (each re-simulation uses seed + its number).
    """

    kind = "liquid"
    reverse_only = True

    def __init__(self, ff, *, name: str = "liquid", smiles: str, n_molecules: int = 216,
                 temperature: float = 298.15, pressure: float = 1.01325,
                 density: float | None = None, hvap: float | None = None,
                 density_denominator: float = 0.03, hvap_denominator: float = 3.0,
                 weight: float = 1.0, timestep: float = 0.002, friction: float = 1.0,
                 equilibration: int = 2500, production: int = 10000, every: int = 100,
                 gas_production: int = 20000, gas_every: int = 100, min_ess: float = 0.5,
                 seed: int = 0, charges: str | None = None, initial_density: float = 0.9):
        from chronograd.topology import Molecule
        from chronograd.topology.boxes import liquid_box

        if density is None and hvap is None:
            raise InputError(f"target {name!r}: give an experimental density and/or hvap")
        if not 0.0 < min_ess <= 1.0:
            raise InputError(f"target {name!r}: min_ess is a fraction of the frames, in"
                             f" (0, 1]; got {min_ess}")
        for key, v in (("equilibration", equilibration), ("production", production),
                       ("gas_production", gas_production)):
            if v < 0 or (key != "equilibration" and v == 0):
                raise InputError(f"target {name!r}: {key} must be positive, got {v}")
        if production % every or gas_production % gas_every:
            raise InputError(f"target {name!r}: production ({production}) and gas_production"
                             f" ({gas_production}) must be multiples of every ({every}) and"
                             f" gas_every ({gas_every})")
        self.name, self.weight = name, float(weight)
        self.temperature, self.pressure = float(temperature), float(pressure)
        self.beta = 1.0 / (BOLTZMANN * self.temperature)
        self.exp = {"density": density, "hvap": hvap}
        self.den = {"density": float(density_denominator), "hvap": float(hvap_denominator)}
        self.rows = [k for k in ("density", "hvap") if self.exp[k] is not None]
        self.run = dict(timestep=timestep, friction=friction, equilibration=equilibration,
                        production=production, every=every, gas_production=gas_production,
                        gas_every=gas_every)
        self.min_ess, self.seed = float(min_ess), int(seed)
        self.n_molecules = int(n_molecules)
        try:
            mol = Molecule.from_smiles(smiles, name=name)
        except Exception as e:
            raise InputError(f"target {name!r}: cannot read SMILES {smiles!r}: {e}") from None
        mols, pos, box = liquid_box(mol, self.n_molecules, density_g_ml=initial_density,
                                    seed=self.seed)
        self.liquid = ff.create_system(mols, box=box, charges=charges)
        self.gas = ff.create_system(mol, charges=charges)
        self.records = [SimpleNamespace(system=self.liquid), SimpleNamespace(system=self.gas)]
        self._start = {"liquid": (pos, box), "gas": (np.asarray(mol.positions), None)}
        self._density = observables.density(self.liquid.masses)
        U_liq = self.liquid.energy_fn()
        U_gas = self.gas.energy_fn()
        self._energies = {
            "liquid": jax.jit(lambda xs, bs, th: jax.lax.map(
                lambda xb: U_liq(xb[0], xb[1], th), (xs, bs))),
            "gas": jax.jit(lambda xs, th: jax.lax.map(lambda x: U_gas(x, None, th), xs)),
        }
        self.sample = None  # the stored frames and the energies they were sampled with
        self.n_simulations = 0
        self.last_ess = None
        self._engines = None

    # ---- sampling (host side) ----
    def _simulate(self, theta):
        from chronograd.dynamics import langevin
        from chronograd.dynamics.barostat import monte_carlo_barostat
        from chronograd.dynamics.reporters import ReservoirReporter
        from chronograd.dynamics.runner import simulate
        from chronograd.minimize import minimize

        r = self.run
        if self._engines is None:
            liq = langevin(self.liquid, timestep=r["timestep"], temperature=self.temperature,
                           friction=r["friction"])
            baro = monte_carlo_barostat(liq, pressure=self.pressure,
                                        temperature=self.temperature)
            gas = langevin(self.gas, timestep=r["timestep"], temperature=self.temperature,
                           friction=r["friction"])
            self._engines = (liq, baro, gas)
        liq, baro, gas = self._engines
        key = jax.random.key(self.seed + self.n_simulations)
        k1, k2 = jax.random.split(key)
        if self.sample is None:
            x0, box0 = self._start["liquid"]
            x0 = minimize(self.liquid, x0, box0, params=theta, tolerance=50.0).positions
            equil = 2 * r["equilibration"]
        else:
            x0, box0 = self.sample["last_liquid"]
            equil = r["equilibration"]
        s = liq.init(x0, box=box0, key=k1, temperature=self.temperature, params=theta)
        s = simulate(liq, s, equil, params=theta, barostat=baro)
        n_frames = r["production"] // r["every"]
        rep = ReservoirReporter(n_frames, every=r["every"])
        s = simulate(liq, s, r["production"], params=theta, barostat=baro, reporters=[rep])
        order = np.argsort(rep.steps)
        frames = np.stack(rep.frames)[order]
        boxes = np.stack(rep.boxes)[order]
        last_liquid = (np.asarray(s.positions), np.asarray(s.box))

        xg0 = self._start["gas"][0] if self.sample is None else self.sample["last_gas"]
        g = gas.init(xg0, key=k2, temperature=self.temperature, params=theta)
        g = simulate(gas, g, r["equilibration"], params=theta)
        n_gas = r["gas_production"] // r["gas_every"]
        grep = ReservoirReporter(n_gas, every=r["gas_every"])
        g = simulate(gas, g, r["gas_production"], params=theta, reporters=[grep])
        gframes = np.stack(grep.frames)[np.argsort(grep.steps)]

        u_liq = np.asarray(self._energies["liquid"](jnp.asarray(frames), jnp.asarray(boxes),
                                                    theta))
        u_gas = np.asarray(self._energies["gas"](jnp.asarray(gframes), theta))
        self.n_simulations += 1
        self.sample = {"frames": frames, "boxes": boxes, "u_liquid": u_liq,
                       "gas_frames": gframes, "u_gas": u_gas, "last_liquid": last_liquid,
                       "last_gas": np.asarray(g.positions)}

    def _ess(self, theta) -> float:
        s = self.sample
        u = np.asarray(self._energies["liquid"](jnp.asarray(s["frames"]),
                                                jnp.asarray(s["boxes"]), theta))
        ug = np.asarray(self._energies["gas"](jnp.asarray(s["gas_frames"]), theta))
        ess_l = float(effective_sample_size(exp_log_weights(u, s["u_liquid"], self.beta))) \
            / len(u)
        ess_g = float(effective_sample_size(exp_log_weights(ug, s["u_gas"], self.beta))) \
            / len(ug)
        return min(ess_l, ess_g)

    def prepare(self, theta):
        """Reweight the stored sample to theta, or re-simulate at theta when its effective
        sample size (as a fraction of the frames) is below ``min_ess``. Returns the data the
        residuals need."""
        theta = jax.tree_util.tree_map(jnp.asarray, theta)
        ess = self._ess(theta) if self.sample is not None else 0.0
        if not np.isfinite(ess) or ess < self.min_ess:
            self._simulate(theta)
            ess = 1.0
        self.last_ess = float(ess)
        s = self.sample
        rho = jax.vmap(lambda b: self._density(None, b))(jnp.asarray(s["boxes"]))
        return (jnp.asarray(s["frames"]), jnp.asarray(s["boxes"]), jnp.asarray(s["u_liquid"]),
                rho, jnp.asarray(s["gas_frames"]), jnp.asarray(s["u_gas"]))

    def get_state(self):
        return {"sample": self.sample, "n_simulations": self.n_simulations}

    def set_state(self, state):
        self.sample, self.n_simulations = state["sample"], state["n_simulations"]

    # ---- pure JAX, given the data ----
    def properties(self, theta, data):
        """{"density": g/mL, "hvap": kJ/mol} reweighted to theta from ``data``."""
        frames, boxes, u_s, rho, gframes, ug_s = data
        u = self._energies["liquid"](frames, boxes, theta)
        w = exp_weights(u, u_s, self.beta)
        ug = self._energies["gas"](gframes, theta)
        wg = exp_weights(ug, ug_s, self.beta)
        hvap = (wg @ ug - (w @ u) / self.n_molecules + BOLTZMANN * self.temperature)
        return {"density": w @ rho, "hvap": hvap}

    def residuals(self, theta, data):
        p = self.properties(theta, data)
        scale = jnp.sqrt(self.weight / len(self.rows))
        return jnp.stack([scale * (p[k] - self.exp[k]) / self.den[k] for k in self.rows])

    def loss(self, theta, data):
        r = self.residuals(theta, data)
        return r @ r

    def check_finite(self, theta):
        if self.sample is not None:  # a resumed fit: checked when it started
            return
        v = np.asarray(self.loss(theta, self.prepare(theta)))
        if not np.isfinite(v):
            raise InputError(f"target {self.name!r}: non-finite loss at the initial"
                             " parameters; check the molecule and the run settings")

    def metrics(self, theta) -> dict:
        p = self.properties(theta, self.prepare(theta))
        out = {"n_geometries": len(self.sample["frames"]), "n_simulations": self.n_simulations,
               "ess_fraction": self.last_ess}
        for k in self.rows:
            out[k] = float(p[k])
            out[f"{k}_experiment"] = float(self.exp[k])
        return {"all": out}

    def predictions(self, theta) -> list[dict]:
        return []
