"""Liquid fits judged independently: the fitted `.offxml` files exported through OpenFF
Interchange to OpenMM and simulated there, against chronograd's own validation runs.

For each liquid fit output (``chronograd fit examples/fit/water_liquid.toml`` and
``examples/fit/alcohols_liquid.toml``; the script runs a fit whose output is missing):

1. the fit's `summary.json`: experiment, and chronograd's fresh validation runs before
   (Sage 2.2.1) and after (fitted) with standard errors;
2. OpenMM (CPU platform): the same box size, Sage 2.2.1 and the fitted `.offxml` through
   the OpenFF toolkit + Interchange, LangevinMiddle 2 fs, 1/ps, Monte Carlo barostat every
   25 steps, ``--equil-ps`` then ``--prod-ps`` of NPT; the gas phase: one molecule in vacuum,
   ``--gas-ns``; density and H_vap with standard errors from the statistical inefficiency
   (``chronograd.gradients.mean_std_error``, the estimator the fits use);
3. agreement: (chronograd - OpenMM) / combined standard error per property, and the combined
   error |dH_vap| / 3 kJ/mol + |d rho| / 0.03 g/mL against experiment in OpenMM (the issue's
   measure; Sage's TIP3P ~1.05).

Run: `python benchmarks/bench_liquid.py [--only water|alcohols] [--skip-fit]`.
`--cg-ps N` judges with chronograd validation runs of N ps (the fitted target's own
``validate``, at the fit's settings otherwise) instead of the fit's shorter ones, so that
both engines' runs are equally long. `--baseline-only` runs only the Sage 2.2.1
simulations (OpenMM's, and chronograd's with `--cg-ps`; they do not need the fit, so they can
run while it does). Every result is
kept in `out/bench-liquid-openmm.json`, keyed by the `.offxml`'s content, the molecule, the
run lengths and the OpenMM version (chronograd's: the target's and `[forcefield]`'s settings),
and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FITS = {"water": (ROOT / "examples/fit/water_liquid.toml", ROOT / "out/fit-water-liquid"),
        "alcohols": (ROOT / "examples/fit/alcohols_liquid.toml",
                     ROOT / "out/fit-alcohols-liquid")}
BASE = "openff-2.2.1.offxml"
CACHE = ROOT / "out/bench-liquid-openmm.json"
JOBS = 2  # simulations at once (--jobs)
T, P = 298.15, 1.01325
R = 0.00831446261815324  # kJ/mol/K


def openmm_npt(offxml, smiles, n_molecules, seed=0, integrator_seed=None, velocity_seed=None):
    """(context, integrator, system, molecule, OpenFF molecule, charged molecules, OpenFF force
    field): ``n_molecules`` on chronograd's lattice through Interchange, minimized, NPT at T, P
    (LangevinMiddle 2 fs, 1/ps, MC barostat every 25 steps), velocities drawn. ``seed`` sets
    the lattice; the integrator's and the velocities' seeds default to seed + 1, seed + 2."""
    import openmm
    import openmm.unit as u
    from openff.interchange import Interchange
    from openff.toolkit import ForceField as OFFForceField
    from openff.toolkit import Molecule as OFFMolecule
    from openff.toolkit import Topology
    from openff.units import unit

    from chronograd.forcefield.charges import am1bcc_charges
    from chronograd.topology import Molecule
    from chronograd.topology.boxes import liquid_box

    mol = Molecule.from_smiles(smiles)
    off = OFFMolecule.from_rdkit(mol.rdmol, allow_undefined_stereo=True)
    charged = []
    if smiles != "O":  # water: the force field's library charges
        off.partial_charges = am1bcc_charges(mol) * unit.elementary_charge
        charged = [off]
    ff = OFFForceField(str(offxml))
    _, pos, box = liquid_box(mol, n_molecules, density_g_ml=1.0 if smiles == "O" else 0.75,
                             seed=seed)
    top = Topology.from_molecules([off] * n_molecules)
    top.box_vectors = np.asarray(box) * unit.nanometer
    system = Interchange.from_smirnoff(ff, top, charge_from_molecules=charged or None
                                       ).to_openmm_system()
    system.addForce(openmm.MonteCarloBarostat(P * u.bar, T * u.kelvin, 25))
    integ = openmm.LangevinMiddleIntegrator(T * u.kelvin, 1.0 / u.picosecond,
                                            0.002 * u.picoseconds)
    integ.setRandomNumberSeed(seed + 1 if integrator_seed is None else integrator_seed)
    ctx = openmm.Context(system, integ, openmm.Platform.getPlatformByName("CPU"))
    ctx.setPeriodicBoxVectors(*(np.asarray(box) * u.nanometer))
    ctx.setPositions(np.asarray(pos) * u.nanometer)
    openmm.LocalEnergyMinimizer.minimize(ctx, 10.0)
    ctx.setVelocitiesToTemperature(
        T * u.kelvin, seed + 2 if velocity_seed is None else velocity_seed)
    return ctx, integ, system, mol, off, charged, ff


def openmm_liquid(offxml, smiles, n_molecules, *, equil_ps, prod_ps, gas_ns, seed=0):
    """{"density": (g/mL, SE), "hvap": (kJ/mol, SE), "ms_per_step": ...} from OpenMM."""
    import openmm
    import openmm.unit as u
    from openff.interchange import Interchange
    from openff.toolkit import Topology

    from chronograd.gradients.ensemble import mean_std_error

    ctx, integ, system, mol, off, charged, ff = openmm_npt(offxml, smiles, n_molecules, seed)
    integ.step(int(equil_ps / 0.002))
    mass = sum(system.getParticleMass(i).value_in_unit(u.dalton)
               for i in range(system.getNumParticles()))
    every = 125  # 0.25 ps
    rho, u_liq = [], []
    t0 = time.perf_counter()
    for _ in range(int(prod_ps / 0.002) // every):
        integ.step(every)
        st = ctx.getState(getEnergy=True)
        v = st.getPeriodicBoxVolume().value_in_unit(u.nanometer ** 3)
        rho.append(mass / v / 602.214076)
        u_liq.append(st.getPotentialEnergy().value_in_unit(u.kilojoule_per_mole))
    ms = 1e3 * (time.perf_counter() - t0) / int(prod_ps / 0.002)
    # the gas: one molecule, no cutoff
    gtop = Topology.from_molecules([off])
    gsys = Interchange.from_smirnoff(ff, gtop, charge_from_molecules=charged or None
                                     ).to_openmm_system()
    for f in gsys.getForces():
        if isinstance(f, openmm.NonbondedForce):
            f.setNonbondedMethod(openmm.NonbondedForce.NoCutoff)
    ginteg = openmm.LangevinMiddleIntegrator(T * u.kelvin, 1.0 / u.picosecond,
                                             0.002 * u.picoseconds)
    ginteg.setRandomNumberSeed(seed + 3)
    gctx = openmm.Context(gsys, ginteg, openmm.Platform.getPlatformByName("Reference"))
    gctx.setPositions(np.asarray(mol.positions) * u.nanometer)
    gctx.setVelocitiesToTemperature(T * u.kelvin, seed + 4)
    ginteg.step(5000)
    u_gas = []
    for _ in range(int(gas_ns * 1000 / 0.002) // 250):
        ginteg.step(250)
        u_gas.append(gctx.getState(getEnergy=True).getPotentialEnergy()
                     .value_in_unit(u.kilojoule_per_mole))
    d = mean_std_error(np.asarray(rho))
    liq = mean_std_error(np.asarray(u_liq) / n_molecules)
    gas = mean_std_error(np.asarray(u_gas))
    return {"density": (d["value"], d["std_error"]),
            "hvap": (gas["value"] - liq["value"] + R * T,
                     float(np.hypot(gas["std_error"], liq["std_error"]))),
            "ms_per_step": ms}


def combined(values, exp):
    """|dH_vap| / 3 + |d rho| / 0.03 and its standard error."""
    e = abs(values["hvap"][0] - exp["hvap"]) / 3 + abs(values["density"][0] - exp["density"]) / 0.03
    se = float(np.hypot(values["hvap"][1] / 3, values["density"][1] / 0.03))
    return e, se


def _openmm_job(a):
    offxml, smiles, n, equil_ps, prod_ps, gas_ns = a
    return openmm_liquid(offxml, smiles, n, equil_ps=equil_ps, prod_ps=prod_ps, gas_ns=gas_ns)


def _job_key(offxml, smiles, n, equil_ps, prod_ps, gas_ns):
    """The cache key of one OpenMM judgement: the force field file's content (an installed
    one found through `openforcefields`), molecule, lengths, OpenMM version."""
    import openforcefields
    import openmm

    path = Path(offxml)
    if not path.exists():
        path = next(Path(d) / offxml for d in openforcefields.get_forcefield_dirs_paths()
                    if (Path(d) / offxml).exists())
    ff = hashlib.sha256(path.read_bytes()).hexdigest()
    return json.dumps([ff, smiles, n, equil_ps, prod_ps, gas_ns, openmm.__version__])


def _cached(job, keys, args_list, what):
    """``job(a)`` for each a of ``args_list`` whose key the cache lacks, ``JOBS`` at a time
    (default two, one per core), each result written to the cache as it comes; every key's
    result."""
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    todo = {k: a for k, a in zip(keys, args_list, strict=True) if k not in cache}
    print(f"{what}: {len(keys) - len(todo)} of {len(keys)} runs from {CACHE.name},"
          f" {len(todo)} to run", flush=True)
    with ProcessPoolExecutor(JOBS) as pool:
        futures = {pool.submit(job, a): k for k, a in todo.items()}
        for f in as_completed(futures):
            cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
            cache[futures[f]] = f.result()
            CACHE.parent.mkdir(parents=True, exist_ok=True)
            CACHE.write_text(json.dumps(cache, indent=1))
            print(f"{what} done: {futures[f]} -> {cache[futures[f]]}", flush=True)
    return [cache[k] for k in keys]


def run_openmm(args_list):
    """OpenMM results for each (offxml, smiles, n, equil_ps, prod_ps, gas_ns), cached."""
    results = _cached(_openmm_job, [_job_key(*a) for a in args_list], args_list, "OpenMM")
    return [{k: tuple(v) if isinstance(v, list) else v for k, v in r.items()} for r in results]


def _cg_job(a):
    """chronograd's validation of one target at one force field, ``ps`` of production."""
    config, target_name, offxml, ps = a
    from chronograd.fit import load_config
    from chronograd.fit.build import build_objective
    from chronograd.forcefield import ForceField

    cfg = load_config(config)
    ff, obj = build_objective(cfg)
    target = next(t for t in obj.targets if t.name == target_name)
    chunk = target.run["production"]
    target.validation_production = max(1, round(ps / 0.002 / chunk)) * chunk
    t0 = time.perf_counter()
    out = target.validate(ForceField(str(offxml)).params)
    out["wall_s"] = time.perf_counter() - t0
    return out


def _cg_key(config, name, offxml, ps):
    """The cache key of one chronograd validation: what it depends on, i.e. the config's
    ``[forcefield]`` table and this target's table (not the parameters, priors, optimizer or
    comments), the .offxml's content and ps."""
    import tomllib

    raw = tomllib.loads(Path(config).read_text())
    target = next(t for t in raw["targets"] if t["name"] == name)
    settings = json.dumps([raw.get("forcefield", {}), target], sort_keys=True, default=str)
    return json.dumps(["chronograd-target", hashlib.sha256(settings.encode()).hexdigest(),
                       _job_key(offxml, name, 0, 0, ps, 0)])


def run_chronograd(args_list):
    """chronograd validations for each (config, target name, offxml, ps), cached
    (``_cg_key``)."""
    keys = [_cg_key(*a) for a in args_list]
    return _cached(_cg_job, keys, args_list, "chronograd")


def run_fit(config, out, skip):
    summary = out / "summary.json"
    if not summary.exists():
        if skip:
            raise SystemExit(f"{summary} is missing: run `chronograd fit {config}` first")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "chronograd", "fit", str(config)], check=True)
        print(f"fit {config.name}: {time.perf_counter() - t:.0f} s")
    return json.loads(summary.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(FITS))
    ap.add_argument("--skip-fit", action="store_true", help="use existing fit outputs")
    ap.add_argument("--equil-ps", type=float, default=40.0)
    # 400 ps: the combined error's own standard error ~0.06 (100 ps: ~0.13, too coarse to
    # judge a 0.3 bar)
    ap.add_argument("--prod-ps", type=float, default=400.0)
    ap.add_argument("--gas-ns", type=float, default=2.0)
    ap.add_argument("--cg-ps", type=float, default=0.0,
                    help="chronograd validation runs of this many ps (default: the fit's own)")
    ap.add_argument("--jobs", type=int, default=2,
                    help="simulations run at once (default 2, one per core; 1 beside another"
                    " job)")
    ap.add_argument("--baseline-only", action="store_true",
                    help="run (and cache) only the Sage 2.2.1 simulations (OpenMM; with --cg-ps,"
                    " chronograd's too); no fit needed")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    global JOBS
    JOBS = args.jobs
    import tomllib

    from chronograd.fit import load_config

    jobs = []  # (fit name, target, experiment, chronograd validation, when, .offxml)
    if args.baseline_only:
        targets = [(name, t) for name in ([args.only] if args.only else list(FITS))
                   for t in tomllib.loads(FITS[name][0].read_text())["targets"]]
        run_openmm([(BASE, t["smiles"], t["n_molecules"], args.equil_ps, args.prod_ps,
                     args.gas_ns) for _, t in targets])
        if args.cg_ps:  # and chronograd's Sage validations
            run_chronograd([(FITS[name][0], t["name"], BASE, args.cg_ps)
                            for name, t in targets])
        return
    for name in [args.only] if args.only else list(FITS):
        config, out = FITS[name]
        summary = run_fit(config, out, args.skip_fit)
        load_config(config)  # the config still reads
        fitted = out / summary["forcefield"] if not Path(summary["forcefield"]).is_absolute() \
            else Path(summary["forcefield"])
        raw = tomllib.loads(config.read_text())
        for t in raw["targets"]:
            m1 = summary["metrics_final"][t["name"]]["all"]
            exp = {k: m1[f"{k}_experiment"] for k in ("density", "hvap")}
            val = summary["validation"][t["name"]]
            for when, ffile in (("before", BASE), ("after", fitted)):
                jobs.append((name, t, exp, val[when], when, str(ffile)))
    if args.cg_ps:  # chronograd's own, longer validations replace the fit's
        cg_runs = run_chronograd([(FITS[j[0]][0], j[1]["name"], j[5], args.cg_ps)
                                  for j in jobs])
        jobs = [(*j[:3], cg, *j[4:]) for j, cg in zip(jobs, cg_runs, strict=True)]
    results = run_openmm([(j[5], j[1]["smiles"], j[1]["n_molecules"], args.equil_ps,
                           args.prod_ps, args.gas_ns) for j in jobs])
    # one RESULTS section per fit ("liquid-water", "liquid-alcohols"), so that judging one
    # fit leaves the other's rows in place
    by_fit: dict[str, tuple[list, list, list]] = {}
    for (name, t, exp, val, when, _), omm in zip(jobs, results, strict=True):
        rows, agree, judged = by_fit.setdefault(name, ([], [], []))
        tname, n = t["name"], t["n_molecules"]
        cg_v = {k: tuple(val[k]) for k in ("density", "hvap")}
        e_cg, se_cg = combined(cg_v, exp)
        e_omm, se_omm = combined(omm, exp)
        z = {k: (cg_v[k][0] - omm[k][0]) / np.hypot(cg_v[k][1], omm[k][1])
             for k in ("density", "hvap")}
        rows.append(
            f"| {tname} ({n}) | {when} | {exp['density']:.4f} / {exp['hvap']:.2f} |"
            f" {cg_v['density'][0]:.4f} ± {cg_v['density'][1]:.4f} |"
            f" {omm['density'][0]:.4f} ± {omm['density'][1]:.4f} |"
            f" {cg_v['hvap'][0]:.2f} ± {cg_v['hvap'][1]:.2f} |"
            f" {omm['hvap'][0]:.2f} ± {omm['hvap'][1]:.2f} |"
            f" {z['density']:+.1f} / {z['hvap']:+.1f} |"
            f" {e_cg:.2f} ± {se_cg:.2f} | {e_omm:.2f} ± {se_omm:.2f} |")
        agree.append(max(abs(z["density"]), abs(z["hvap"])))
        judged.append((tname, when, omm["ms_per_step"]))
        print(rows[-1], flush=True)
    for name, (rows, agree, judged) in by_fit.items():
        body = "\n".join([
            f"## Liquid fit judged in OpenMM: {name} (issue 20; `benchmarks/bench_liquid.py`)",
            "",
            f"Command: `{' '.join(['python benchmarks/bench_liquid.py', *sys.argv[1:]])}`"
            f" (each number from one simulation; simulations of the same inputs are reused from"
            f" `out/{CACHE.name}`, e.g. the Sage runs of `--baseline-only` made while the fit"
            f" ran; the fit is the shipped example,"
            f" `chronograd fit {FITS[name][0].relative_to(ROOT)}`).",
            machine_line(), "",
            ("chronograd: the fit's own fresh validation runs (report.md)." if not args.cg_ps
             else f"chronograd: fresh validation runs of {args.cg_ps:g} ps (the fitted target's"
             " `validate`, its settings otherwise; the fit's own are in report.md).")
            + " OpenMM: the `.offxml`"
            f" through OpenFF Interchange, CPU platform, {args.equil_ps:g} ps +"
            f" {args.prod_ps:g} ps NPT (LangevinMiddle 2 fs, 1/ps, MC barostat every 25 steps)"
            f" and {args.gas_ns:g} ns of the gas molecule. ± standard errors (statistical"
            " inefficiency). z: (chronograd - OpenMM) / combined standard error. Error:"
            " |dH_vap| / 3 kJ/mol + |d rho| / 0.03 g/mL against experiment.", "",
            "| liquid (molecules) | parameters | experiment rho / H_vap | rho chronograd |"
            " rho OpenMM | H_vap chronograd | H_vap OpenMM | z rho / H_vap | error chronograd |"
            " error OpenMM |", "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
            f"Largest |z|: {max(agree):.1f}. OpenMM CPU cost (two runs side by side): "
            + ", ".join(f"{t} {w} {ms:.2f} ms/step" for t, w, ms in judged) + "."])
        write_section(f"liquid-{name}", body)

if __name__ == "__main__":
    main()
