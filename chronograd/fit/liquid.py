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
of the frames of one simulation), the stored sample is reweighted; otherwise the liquid and
the gas are re-simulated at theta (continuing from the last configuration). With ``pool = 1``
the new sample replaces the old one; with ``pool = K`` the frames of the last K simulations
are reweighted together by MBAR (each frame's U_s above becomes the mixture's reference
energy, ``gradients.ensemble.mbar_reference``; OpenFF Evaluator reweights its stored
simulations the same way), so that near convergence, where the fit's steps are small, its
estimates rest on several simulations rather than the noise of the last one. The sample is
the target's state: ``get_state``/``set_state`` put it into the fit checkpoint, so a resumed
fit continues with the same frames.

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
from chronograd.gradients.ensemble import mbar_reference
from chronograd.gradients.reweighting import effective_sample_size, exp_log_weights, exp_weights
from chronograd.system.forces import PRECISIONS
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
        density_std_error, hvap_std_error: requested standard errors (g/mL, kJ/mol): every
            simulation is extended by ``production`` (and ``gas_production``) steps at a
            time until its estimates reach them, up to ``max_production`` liquid steps
            (default 4 x production); what was reached is in ``sampling``, and a request
            that was not reached is warned about (and shown in the fit's log and report).
        validation_production: liquid steps of the fresh simulations that judge the fit
            before and after (default 2 x production; 0: none).
        min_effective_samples: a run is also extended until every property's series holds
            this many effective (uncorrelated) samples, n / statistical inefficiency. Fewer
            cannot resolve their own correlation time, and the standard error comes out too
            small (measured on water: 5 ps runs, ~6 effective samples, reported 1.5-3x
            below the replicas' spread; 20 ps runs, ~20, agree). 0 turns it off.
        references: where the experimental values come from, {"density": source, ...}
            (a fit config requires them; shown in metrics and the report).
        pool: how many of the most recent simulations are reweighted together (MBAR); 1
            (default): the latest alone. Each evaluation then costs the energies of all the
            pooled frames.
        precision: "double" (default) or "mixed": the liquid and gas dynamics with float32
            forces and a float64 state (a 2,655-atom water step 1.5x faster); the energies
            the estimates and their gradients use are evaluated in float64 either way.

    Residuals are (estimate - experiment) / sqrt(denominator^2 + standard error^2), the
    standard errors those of the current sample; ``loss_noise`` is the objective's
    statistical noise that the fit's step acceptance and stopping rules compare with.
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
                 seed: int = 0, charges: str | None = None, initial_density: float = 0.9,
                 density_std_error: float | None = None, hvap_std_error: float | None = None,
                 max_production: int | None = None,
                 validation_production: int | None = None,
                 references: dict | None = None, min_effective_samples: float = 20.0,
                 pool: int = 1, precision: str = "double"):
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
        requested = {"density": density_std_error, "hvap": hvap_std_error}
        for key, v in requested.items():
            if v is not None and not (np.isfinite(v) and v > 0):
                raise InputError(f"target {name!r}: {key}_std_error must be > 0, got {v}")
        max_production = 4 * production if max_production is None else int(max_production)
        if max_production < production or max_production % production:
            raise InputError(f"target {name!r}: max_production ({max_production}) must be a"
                             f" multiple of production ({production})")
        if not (np.isfinite(min_effective_samples) and min_effective_samples >= 0):
            raise InputError(f"target {name!r}: min_effective_samples must be >= 0, got"
                             f" {min_effective_samples}")
        if precision not in PRECISIONS:
            raise InputError(f"target {name!r}: precision must be one of"
                             f" {', '.join(PRECISIONS)}, got {precision!r}")
        if int(pool) != pool or pool < 1:
            raise InputError(f"target {name!r}: pool counts simulations, an integer >= 1;"
                             f" got {pool}")
        self.pool = int(pool)
        self.min_effective_samples = float(min_effective_samples)
        self.requested = {k: float(v) for k, v in requested.items() if v is not None}
        self.max_production = max_production
        self.sampling = None  # what the last simulation reached
        validation_production = 2 * production if validation_production is None else \
            int(validation_production)
        if validation_production < 0 or validation_production % production:
            raise InputError(f"target {name!r}: validation_production ({validation_production})"
                             f" must be 0 (no validation) or a multiple of production"
                             f" ({production})")
        self.validation_production, self.n_validations = validation_production, 0
        self.name, self.weight = name, float(weight)
        self.temperature, self.pressure = float(temperature), float(pressure)
        self.beta = 1.0 / (BOLTZMANN * self.temperature)
        self.exp = {"density": density, "hvap": hvap}
        self.references = dict(references or {})
        self.den = {"density": float(density_denominator), "hvap": float(hvap_denominator)}
        self.rows = [k for k in ("density", "hvap") if self.exp[k] is not None]
        self.run = dict(timestep=timestep, friction=friction, equilibration=equilibration,
                        production=production, every=every, gas_production=gas_production,
                        gas_every=gas_every, precision=precision)
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
        # jax.checkpoint: the reverse pass recomputes each frame rather than storing every
        # frame's intermediates (a pooled sample holds thousands of frames)
        self._energies = {
            "liquid": jax.jit(lambda xs, bs, th: jax.lax.map(
                jax.checkpoint(lambda xb: U_liq(xb[0], xb[1], th)), (xs, bs))),
            "gas": jax.jit(lambda xs, th: jax.lax.map(
                jax.checkpoint(lambda x: U_gas(x, None, th)), xs)),
        }
        self.sample = None  # the stored frames and the energies they were sampled with
        self.n_simulations = 0
        self.last_ess = None
        self._engines = None

    # ---- sampling (host side) ----
    def _simulate(self, theta):
        """Re-simulate at theta; the new run joins the pool (or replaces the sample)."""
        run, self.sampling = self._run(theta, seed=self.seed + self.n_simulations)
        self.n_simulations += 1
        self.sample = self._pooled(theta, run)
        if "warning" in self.sampling:
            import warnings

            warnings.warn(self.sampling["warning"], stacklevel=3)

    def validate(self, theta) -> dict:
        """A fresh simulation at theta for judging a fit (``validation_production`` liquid
        steps, independent seed; the fit's sample is left as it is): {"density": (value,
        standard error), "hvap": (...), "production": steps, "n_effective": {...}} and a
        "warning" when a series holds fewer than ``min_effective_samples``."""
        chunks = self.validation_production // self.run["production"]
        sample, sampling = self._run(theta, seed=self.seed + 7919 * (1 + self.n_validations),
                                     chunks=chunks)
        self.n_validations += 1
        data = self._data(sample["frames"], sample["boxes"], sample["u_liquid"],
                          sample["gas_frames"], sample["u_gas"])
        est = self.estimates(theta, data)
        out = {**{k: (float(est[k][0]), float(est[k][1])) for k in self.rows},
               "production": self.validation_production,
               "n_effective": {k: float(est["n_effective"][k]) for k in self.rows}}
        if "warning" in sampling:
            out["warning"] = sampling["warning"]
        return out

    def _run(self, theta, *, seed, chunks=None):
        """(sample, sampling): liquid and gas runs at theta from the stored sample's last
        configurations (or the lattice), extended chunk by chunk until the requested standard
        errors or ``max_production`` (or exactly ``chunks`` chunks)."""
        from chronograd.dynamics import langevin
        from chronograd.dynamics.barostat import monte_carlo_barostat
        from chronograd.dynamics.reporters import ReservoirReporter
        from chronograd.dynamics.runner import simulate
        from chronograd.minimize import minimize

        r = self.run
        if self._engines is None:
            liq = langevin(self.liquid, timestep=r["timestep"], temperature=self.temperature,
                           friction=r["friction"], precision=r["precision"])
            baro = monte_carlo_barostat(liq, pressure=self.pressure,
                                        temperature=self.temperature)
            gas = langevin(self.gas, timestep=r["timestep"], temperature=self.temperature,
                           friction=r["friction"], precision=r["precision"])
            self._engines = (liq, baro, gas)
        liq, baro, gas = self._engines
        key = jax.random.key(seed)
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
        xg0 = self._start["gas"][0] if self.sample is None else self.sample["last_gas"]
        g = gas.init(xg0, key=k2, temperature=self.temperature, params=theta)
        g = simulate(gas, g, r["equilibration"], params=theta)

        def chunk(s, g):
            rep = ReservoirReporter(r["production"] // r["every"], every=r["every"])
            s = simulate(liq, s, r["production"], params=theta, barostat=baro, reporters=[rep])
            order = np.argsort(rep.steps)
            grep = ReservoirReporter(r["gas_production"] // r["gas_every"],
                                     every=r["gas_every"])
            g = simulate(gas, g, r["gas_production"], params=theta, reporters=[grep])
            return s, g, (np.stack(rep.frames)[order], np.stack(rep.boxes)[order],
                          np.stack(grep.frames)[np.argsort(grep.steps)])

        parts, steps = [], 0
        while True:
            s, g, part = chunk(s, g)
            parts.append(part)
            steps += r["production"]
            frames, boxes, gframes = (np.concatenate(a) for a in zip(*parts, strict=True))
            u_liq, u_gas = self._at(theta, frames, boxes, gframes)
            data = self._data(frames, boxes, u_liq, gframes, u_gas)
            est = self.estimates(theta, data, (u_liq, u_gas))
            missed = [f"{k} {est[k][1]:.3g} > {v:g}" for k, v in self.requested.items()
                      if est[k][1] > v]
            short = [f"{k} {est['n_effective'][k]:.1f}" for k in self.rows
                     if est["n_effective"][k] < self.min_effective_samples * (1 - 1e-9)]
            reached = not (missed or short)
            if chunks is not None:
                if len(parts) == chunks:
                    break
            elif reached or steps >= self.max_production:
                break
        sampling = {"production": steps, "gas_production": steps // r["production"]
                    * r["gas_production"],
                    **{f"{k}_std_error": float(est[k][1]) for k in self.rows},
                    **{f"{k}_n_effective": float(est["n_effective"][k]) for k in self.rows},
                    "requested": dict(self.requested), "reached": bool(reached)}
        if not reached:
            what = "validation run" if chunks is not None else \
                f"run (max_production = {self.max_production} steps)"
            parts = []
            if missed:
                parts.append("the requested standard errors were not reached"
                             f" ({', '.join(missed)})")
            if short:
                parts.append(f"too few effective samples ({', '.join(short)} <"
                             f" min_effective_samples = {self.min_effective_samples:g}), so"
                             " the standard errors are likely underestimated")
            sampling["warning"] = (
                f"target {self.name!r}: in a {steps}-step {what} " + "; ".join(parts)
                + ": the estimates are noisier than asked; raise max_production (or the"
                " validation length) or relax the request")
        sample = {"frames": frames, "boxes": boxes, "u_liquid": u_liq,
                  "gas_frames": gframes, "u_gas": u_gas,
                  "last_liquid": (np.asarray(s.positions), np.asarray(s.box)),
                  "last_gas": np.asarray(g.positions)}
        return sample, sampling

    def _pooled(self, theta, run):
        """The sample after ``run`` (a fresh simulation at theta): the last ``pool - 1`` runs
        of the stored sample and this one, each frame's reference energy that of their MBAR
        mixture. Keeps every pooled frame's energies at every pooled state (u_kn, kJ/mol)
        and the states' parameters, so the next run can join."""
        leaves = [np.asarray(v) for v in jax.tree_util.tree_leaves(theta)]
        n, ng = len(run["frames"]), len(run["gas_frames"])
        old = self.sample
        keep = 0 if old is None or old.get("states") is None else \
            min(self.pool - 1, len(old["states"]))
        if keep == 0:
            return {**run, "states": [leaves], "segments": [n], "gas_segments": [ng],
                    "u_kn_liquid": run["u_liquid"][None], "u_kn_gas": run["u_gas"][None]}
        nl, ngl = sum(old["segments"][-keep:]), sum(old["gas_segments"][-keep:])
        frames, boxes, gframes = old["frames"][-nl:], old["boxes"][-nl:], old["gas_frames"][-ngl:]
        treedef = jax.tree_util.tree_structure(theta)
        states = old["states"][-keep:]
        rows_l, rows_g = [], []
        for k, st in enumerate(states):  # the new frames at the kept states
            th_k = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) for v in st])
            u_new, ug_new = self._at(th_k, run["frames"], run["boxes"], run["gas_frames"])
            rows_l.append(np.concatenate([old["u_kn_liquid"][-keep + k][-nl:], u_new]))
            rows_g.append(np.concatenate([old["u_kn_gas"][-keep + k][-ngl:], ug_new]))
        u_old, ug_old = self._at(theta, frames, boxes, gframes)  # the old frames at theta
        rows_l.append(np.concatenate([u_old, run["u_liquid"]]))
        rows_g.append(np.concatenate([ug_old, run["u_gas"]]))
        u_kn, ug_kn = np.stack(rows_l), np.stack(rows_g)
        seg, gseg = [*old["segments"][-keep:], n], [*old["gas_segments"][-keep:], ng]
        return {"frames": np.concatenate([frames, run["frames"]]),
                "boxes": np.concatenate([boxes, run["boxes"]]),
                "gas_frames": np.concatenate([gframes, run["gas_frames"]]),
                "u_liquid": mbar_reference(self.beta * u_kn, seg) / self.beta,
                "u_gas": mbar_reference(self.beta * ug_kn, gseg) / self.beta,
                "last_liquid": run["last_liquid"], "last_gas": run["last_gas"],
                "states": [*states, leaves], "segments": seg, "gas_segments": gseg,
                "u_kn_liquid": u_kn, "u_kn_gas": ug_kn}

    def _segments(self):
        """(liquid, gas) frame counts of the runs pooled in the stored sample."""
        s = self.sample
        return (s.get("segments", [len(s["frames"])]),
                s.get("gas_segments", [len(s["gas_frames"])]))

    def _at(self, theta, frames, boxes, gas_frames):
        """Liquid and gas energies of the frames at theta (host arrays)."""
        return (np.asarray(self._energies["liquid"](jnp.asarray(frames), jnp.asarray(boxes),
                                                    theta)),
                np.asarray(self._energies["gas"](jnp.asarray(gas_frames), theta)))

    def _ess(self, theta, energies=None) -> float:
        """The effective sample size at theta as a fraction of the latest simulation's frames
        (liquid or gas, the smaller; above 1 when a pool holds more than one run's worth)."""
        s = self.sample
        seg, gseg = self._segments()
        u, ug = energies or self._at(theta, s["frames"], s["boxes"], s["gas_frames"])
        ess_l = float(effective_sample_size(exp_log_weights(u, s["u_liquid"], self.beta))) \
            / seg[-1]
        ess_g = float(effective_sample_size(exp_log_weights(ug, s["u_gas"], self.beta))) \
            / gseg[-1]
        return min(ess_l, ess_g)

    def prepare(self, theta):
        """Reweight the stored sample to theta, or re-simulate at theta when its effective
        sample size (as a fraction of the frames) is below ``min_ess``. Returns the data the
        residuals need."""
        theta = jax.tree_util.tree_map(jnp.asarray, theta)
        energies = None
        if self.sample is not None:  # the frames' energies at theta: for the ESS and errors
            s = self.sample
            energies = self._at(theta, s["frames"], s["boxes"], s["gas_frames"])
        ess = self._ess(theta, energies) if energies is not None else 0.0
        if not np.isfinite(ess) or ess < self.min_ess:
            self._simulate(theta)
            s = self.sample
            energies = (s["u_kn_liquid"][-1], s["u_kn_gas"][-1])
            ess = 1.0 if len(s["segments"]) == 1 else self._ess(theta, energies)
        self.last_ess = float(ess)
        s = self.sample
        data = self._data(s["frames"], s["boxes"], s["u_liquid"], s["gas_frames"], s["u_gas"])
        est = self.estimates(theta, data, energies, segments=self._segments())
        return data + (jnp.asarray([est[k][1] for k in self.rows]),)

    def _data(self, frames, boxes, u_liquid, gas_frames, u_gas):
        rho = jax.vmap(lambda b: self._density(None, b))(jnp.asarray(boxes))
        return (jnp.asarray(frames), jnp.asarray(boxes), jnp.asarray(u_liquid), rho,
                jnp.asarray(gas_frames), jnp.asarray(u_gas))

    def get_state(self):
        return {"sample": self.sample, "n_simulations": self.n_simulations,
                "sampling": self.sampling}

    def set_state(self, state):
        self.sample, self.n_simulations = state["sample"], state["n_simulations"]
        self.sampling = state.get("sampling")  # checkpoints written before it: None

    # ---- pure JAX, given the data ----
    def properties(self, theta, data):
        """{"density": g/mL, "hvap": kJ/mol} reweighted to theta from ``data``."""
        frames, boxes, u_s, rho, gframes, ug_s = data[:6]
        u = self._energies["liquid"](frames, boxes, theta)
        w = exp_weights(u, u_s, self.beta)
        ug = self._energies["gas"](gframes, theta)
        wg = exp_weights(ug, ug_s, self.beta)
        hvap = (wg @ ug - (w @ u) / self.n_molecules + BOLTZMANN * self.temperature)
        return {"density": w @ rho, "hvap": hvap}

    def estimates(self, theta, data, energies=None, segments=None) -> dict:
        """{"density": (value, standard error), "hvap": (...)} at theta from ``data``: the
        reweighted averages of ``properties`` with their errors by ``mean_std_error`` (the
        delta method for the weights, times each run's statistical inefficiency); H_vap's
        error combines the independent liquid and gas runs; "n_effective": {property: the
        effective samples behind it} (H_vap: the smaller of its two runs). ``energies``: the
        frames' liquid and gas energies at theta, when already computed; ``segments``:
        (liquid, gas) frame counts of pooled runs (default: one run each)."""
        from chronograd.gradients.ensemble import mean_std_error

        frames, boxes, u_s, rho, gframes, ug_s = data[:6]
        u, ug = energies or self._at(theta, frames, boxes, gframes)
        w = np.asarray(exp_weights(u, np.asarray(u_s), self.beta), np.float64)
        wg = np.asarray(exp_weights(ug, np.asarray(ug_s), self.beta), np.float64)
        seg, gseg = segments or (None, None)
        rho_e = mean_std_error(np.asarray(rho), w / w.sum(), segments=seg)
        liq = mean_std_error(u / self.n_molecules, w / w.sum(), segments=seg)
        gas = mean_std_error(ug, wg / wg.sum(), segments=gseg)
        hvap = gas["value"] - liq["value"] + BOLTZMANN * self.temperature
        return {"density": (rho_e["value"], rho_e["std_error"]),
                "hvap": (hvap, float(np.hypot(gas["std_error"], liq["std_error"]))),
                "n_effective": {"density": rho_e["n_effective"],
                                "hvap": min(liq["n_effective"], gas["n_effective"])}}

    def _denominators(self, data):
        """sqrt(denominator^2 + standard error^2) per row (the sample's errors, constants)."""
        se = data[6]
        return jnp.stack([jnp.hypot(self.den[k], se[i]) for i, k in enumerate(self.rows)])

    def residuals(self, theta, data):
        p = self.properties(theta, data)
        scale = jnp.sqrt(self.weight / len(self.rows))
        den = self._denominators(data)
        return jnp.stack([scale * (p[k] - self.exp[k]) / den[i]
                          for i, k in enumerate(self.rows)])

    def loss_noise(self, theta, data) -> float:
        """The standard error of this target's loss at theta (delta method over the
        properties' standard errors)."""
        est = self.estimates(theta, data, segments=self._segments())
        den = np.asarray(self._denominators(data))
        c = self.weight / len(self.rows)
        terms = [2 * c * (est[k][0] - self.exp[k]) / den[i] ** 2 * est[k][1]
                 for i, k in enumerate(self.rows)]
        return float(np.sqrt(np.sum(np.square(terms))))

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
        est = self.estimates(theta, self.prepare(theta), segments=self._segments())
        out = {"n_geometries": len(self.sample["frames"]), "n_simulations": self.n_simulations,
               "pooled_simulations": len(self._segments()[0]),
               "ess_fraction": self.last_ess}
        for k in self.rows:
            out[k] = float(est[k][0])
            out[f"{k}_std_error"] = float(est[k][1])
            out[f"{k}_experiment"] = float(self.exp[k])
            if k in self.references:
                out[f"{k}_reference"] = self.references[k]
        if self.sampling and "warning" in self.sampling:
            out["warning"] = self.sampling["warning"]
        return {"all": out}

    def predictions(self, theta) -> list[dict]:
        return []
