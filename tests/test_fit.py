"""Fitting: the objective's gradient against central differences, LM Jacobians, resume,
Dask vs serial, the fitted .offxml through the OpenFF toolkit and OpenMM, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

import chronograd as cg
from chronograd.errors import InputError
from chronograd.fit import (
    EnergyForceTarget,
    Evaluator,
    FitError,
    Objective,
    OptimizedGeometryTarget,
    TorsionProfileTarget,
    load_config,
    load_qm_dataset,
    run_fit,
    select_parameters,
)

QM = Path(__file__).resolve().parent.parent / "data" / "qm"
FF = "openff_unconstrained-2.2.1.offxml"


@pytest.fixture(scope="module")
def ethanol():
    ff = cg.ForceField(FF)
    scan, conf = load_qm_dataset(QM, records=["scan-ethanol", "conf-ethanol"])
    targets = [TorsionProfileTarget(ff, [scan], name="scan"),
               EnergyForceTarget(ff, [conf], name="conf", force_weight=0.5)]
    wrt = select_parameters(ff, [{"handler": "ProperTorsions", "attributes": ["k"]},
                                 {"handler": "Bonds"}, {"handler": "Angles"},
                                 {"handler": "vdW", "attributes": ["epsilon"]}])
    return ff, Objective(ff, targets, wrt, prior_weight=0.3)


def test_objective_gradient_matches_central_differences(ethanol):
    _, obj = ethanol
    ev = Evaluator(obj)
    rng = np.random.default_rng(0)
    phi = 0.3 * rng.standard_normal(obj.n)
    loss, grad, _ = ev.value_and_grad(phi)
    assert {lab.split("[")[0] for lab in obj.labels} >= {
        "ProperTorsions.k", "Bonds.length", "Bonds.k", "Angles.angle", "Angles.k",
        "vdW.epsilon"}
    h = 1e-5
    fd = np.array([(ev.value(phi + h * e)[0] - ev.value(phi - h * e)[0]) / (2 * h)
                   for e in np.eye(obj.n)])
    scale = np.abs(grad).max()
    assert np.abs(fd - grad).max() < 1e-6 * scale, np.abs(fd - grad).max() / scale
    # Levenberg-Marquardt's residuals and Jacobian describe the same objective
    r, J, _ = ev.residuals_and_jacobian(phi)
    assert r @ r == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(2 * J.T @ r, grad, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.slow
def test_optimized_geometry_gradient_matches_central_differences():
    ff = cg.ForceField(FF)
    # one batched minimization: ethanol's 9 atoms padded to 16
    recs = load_qm_dataset(QM, records=["opt-ethanol"])
    target = OptimizedGeometryTarget(ff, recs, tolerance=1e-7)
    wrt = select_parameters(ff, [{"handler": "Bonds", "attributes": ["length"]},
                                 {"handler": "Angles", "attributes": ["angle"]}])
    ev = Evaluator(Objective(ff, [target], wrt, prior_weight=0.0))
    phi = 0.2 * np.random.default_rng(1).standard_normal(ev.objective.n)
    _, grad, _ = ev.value_and_grad(phi)
    h = 1e-4
    for i in np.argsort(-np.abs(grad))[:3]:
        e = np.zeros_like(phi)
        e[i] = h
        fd = (ev.value(phi + e)[0] - ev.value(phi - e)[0]) / (2 * h)
        assert fd == pytest.approx(grad[i], rel=1e-4), ev.objective.labels[i]
    theta0 = ev.objective.theta(np.zeros_like(phi))
    m = target.metrics(theta0)["train"]
    assert 0 < m["bond_rmse"] < 0.005 and 0 < m["angle_rmse_deg"] < 5
    # padding does not move the minima: each equals its molecule's own minimization
    for rec, (x_mm, _, _) in zip(target.records, target._deviations(theta0), strict=True):
        alone = cg.minimize(rec.system, rec.record.positions[0], tolerance=1e-7).positions
        assert np.abs(np.asarray(x_mm) - np.asarray(alone)).max() < 1e-6


def _config(tmp_path, method="lbfgs", iterations=4, extra="", out="out", targets=None):
    targets = targets or f"""
[[targets]]
name = "scans"
type = "torsion_profile"
dataset = "{QM}"
records = ["scan-ethanol", "scan-propanal"]

[[targets]]
name = "conformers"
type = "energy_force"
dataset = "{QM}"
records = ["conf-ethanol"]
"""
    text = f"""
[forcefield]
file = "{FF}"

[[parameters]]
handler = "ProperTorsions"
attributes = ["k"]

[[parameters]]
smirks = "#8"
attributes = ["length", "angle"]
{targets}
[optimizer]
method = "{method}"
iterations = {iterations}
{extra}
[output]
directory = "{out}"
"""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "fit.toml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.slow
def test_resumed_fit_equals_uninterrupted(tmp_path):
    whole = run_fit(_config(tmp_path / "a"), progress=False)
    cfg = _config(tmp_path / "b")
    part = run_fit(cfg, stop_after=2, progress=False)
    assert not part["finished"] and not (tmp_path / "b/out/summary.json").exists()
    with pytest.raises(InputError, match="--resume"):
        run_fit(cfg, progress=False)
    done = run_fit(cfg, resume=True, progress=False)
    assert done["loss_final"] == whole["loss_final"]
    assert [p["final"] for p in done["parameters"]] == [p["final"] for p in whole["parameters"]]
    a = (tmp_path / "a/out" / whole["forcefield"]).read_bytes()
    assert a == (tmp_path / "b/out" / done["forcefield"]).read_bytes()
    assert whole["loss_final"] < whole["loss_initial"]
    for name in ("report.md", "loss.png", "parity.png", "torsions.png", "log.jsonl"):
        assert (tmp_path / "a/out" / name).stat().st_size > 0
    log = [json.loads(line) for line in (tmp_path / "a/out/log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in log] == [0, 1, 2, 3, 4]  # iteration 0: the start
    assert not list((tmp_path / "b/out").glob(".*"))  # no temporary or staging files left


@pytest.mark.parametrize("method", [
    pytest.param("adam", marks=pytest.mark.slow),
    # LM's default-suite check: test_levenberg_marquardt_stops_when_converged
    pytest.param("levenberg-marquardt", marks=pytest.mark.slow), "neuroevolution"])
def test_optimizers_lower_the_objective(tmp_path, method):
    extra = "learning_rate = 0.1\n" if method == "adam" else ""
    s = run_fit(_config(tmp_path, method, iterations=3, extra=extra), progress=False)
    assert s["loss_final"] <= s["loss_initial"]
    if method != "neuroevolution":
        assert s["loss_final"] < s["loss_initial"]
    out = tmp_path / "out"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["iteration"] == 0 and log[0]["loss"] == pytest.approx(s["loss_initial"])
    assert s["stopped"]  # a convergence criterion or the iteration limit, named
    report = (out / "report.md").read_text()
    assert "*Top: relative energies of every geometry" in report  # the parity caption
    assert f"(stopped: {s['stopped']})" in report


def test_convergence_criteria_stop_the_fit():
    from chronograd.fit.runner import CONVERGENCE_DEFAULTS, converged

    opts = dict(CONVERGENCE_DEFAULTS)
    log = [{"loss": 10.0}, {"loss": 5.0, "grad_norm": 1.0}]
    assert converged(log, 0.1, opts) is None
    log += [{"loss": 5.0 * (1 - 1e-8), "grad_norm": 1.0}, {"loss": 5.0 * (1 - 2e-8),
                                                            "grad_norm": 1.0}]
    assert "relative objective change" in converged(log, 0.1, opts)
    assert "for 2 iterations" in converged(log, 0.1, opts)
    assert converged(log[:3], 0.1, opts) is None  # one small change is not enough
    assert "gradient norm" in converged([{"loss": 1.0, "grad_norm": 1e-9}], 0.1, opts)
    assert "step" in converged([{"loss": 1.0}, {"loss": 0.5}], 1e-12, opts)
    # a sampled target whose trial steps were all rejected: converged within its noise
    noisy = [{"loss": 1.0, "loss_noise": 0.1}, {"loss": 1.0, "loss_noise": 0.1}]
    assert "within noise" in converged(noisy, 0.0, opts)
    assert "step 0 <=" in converged([{"loss": 1.0}, {"loss": 1.0}], 0.0, opts)


def test_levenberg_marquardt_stops_when_converged(tmp_path):
    """LM on a small fit with a loose objective tolerance stops before its iteration limit
    and says why (it used to run on past convergence)."""
    scan_only = f"""
[[targets]]
name = "scans"
type = "torsion_profile"
dataset = "{QM}"
records = ["scan-ethanol"]
"""
    s = run_fit(_config(tmp_path, "levenberg-marquardt", iterations=12,
                        extra="loss_tolerance = 0.05\npatience = 1\n", targets=scan_only),
                progress=False)
    assert s["iterations"] < 12 and "relative objective change" in s["stopped"]


def test_fitted_offxml_through_openff_toolkit_and_openmm(tmp_path):
    import openmm
    from openff.toolkit import ForceField as OFFForceField
    from openff.toolkit import Molecule as OFFMolecule
    from smirnoff_reference import interchange_system

    s = run_fit(_config(tmp_path, "levenberg-marquardt", iterations=2), progress=False)
    path = tmp_path / "out" / s["forcefield"]
    OFFForceField(str(path))  # loads
    ff = cg.ForceField(str(path))
    (rec,) = load_qm_dataset(QM, records=["scan-propanal"])
    system = ff.create_system(rec.molecule, charges="am1bcc")
    moved = [p for p in s["parameters"] if p["final"] != p["initial"]]
    assert moved
    off_mol = OFFMolecule.from_mapped_smiles(rec.molecule.mapped_smiles(),
                                             allow_undefined_stereo=True)
    charges = np.asarray(system.slots()["Nonbonded"]["charge"])
    omm = interchange_system(str(path), off_mol, charges)
    ctx = openmm.Context(omm, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    for x in rec.positions[::4]:
        ctx.setPositions(x)
        e_ref = ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
            openmm.unit.kilojoule_per_mole)
        assert system.energy(x) == pytest.approx(e_ref, abs=1e-6 * max(1.0, abs(e_ref)))


@pytest.mark.slow
def test_dask_two_workers_equal_serial(tmp_path):
    pytest.importorskip("dask.distributed")
    serial = run_fit(_config(tmp_path / "s", iterations=2), progress=False)
    cfg = _config(tmp_path / "d", iterations=2, extra="\n[parallel]\ncluster = \"local\"\n"
                  "workers = 2\n")
    dask = run_fit(cfg, progress=False)
    assert dask["loss_final"] == serial["loss_final"]
    assert [p["final"] for p in dask["parameters"]] == [p["final"] for p in serial["parameters"]]


# ---- bad input ------------------------------------------------------------------------------

def test_config_errors_name_key_and_line(tmp_path):
    cfg = _config(tmp_path)
    text = cfg.path.read_text()
    def at(bad, marker):  # the 1-based line holding ``marker``
        return next(n for n, line in enumerate(bad.splitlines(), 1) if marker in line)

    cases = [
        (text.replace('method = "lbfgs"', 'method = "lbfgs"\nlearnin_rate = 0.1'),
         "learnin_rate", r"\[optimizer\] learnin_rate: unknown key"),
        (text.replace("iterations = 4", 'iterations = "four"'), "iterations",
         r"\[optimizer\] iterations: expected int"),
        (text.replace('type = "energy_force"', 'type = "energies"'), "energies",
         r"\[\[targets\]\] #2 type: unknown target type 'energies'"),
        (text.replace('records = ["conf-ethanol"]', 'records = ["conf-ethanoll"]'), "ethanoll",
         r"\[\[targets\]\] #2 records: no record 'conf-ethanoll'"),
        (text.replace('method = "lbfgs"', 'method = "sgd"'), "sgd",
         r"\[optimizer\] method: unknown optimizer 'sgd'"),
        (text + '\n[priors]\n"Bonds.length" = "0.1 * kilocalorie_per_mole"\n', "kilocalorie",
         r"\[priors\] Bonds.length: .*has dimension energy/amount, expected length"),
    ]
    for bad, marker, pattern in cases:
        cfg.path.write_text(bad)
        with pytest.raises(InputError, match=rf"fit.toml, line {at(bad, marker)}: {pattern}"):
            run_fit(load_config(cfg.path), progress=False)
    for bad, pattern in [(text.replace("[output]", "[outptu]"), r"\[outptu\]: unknown table"),
                         (text.replace("iterations = 4\n", "iterations = 4\n[[x\n"),
                          r"not valid TOML.*line \d+")]:
        cfg.path.write_text(bad)
        with pytest.raises(InputError, match=pattern):
            run_fit(load_config(cfg.path), progress=False)
    assert not (tmp_path / "out").exists()  # nothing written for bad input



def test_selections_that_select_nothing_are_refused():
    """A size asked for as sigma of a parameter written with rmin_half (Sage's n19) used to be
    left out of the fit silently; ids the force field lacks likewise."""
    ff = cg.ForceField(FF)
    with pytest.raises(InputError, match=r"selection 1 \(n19\) asks for attribute 'sigma'.*"
                       r"rmin_half.*n19 has vdW.epsilon, vdW.rmin_half"):
        select_parameters(ff, [{"ids": ["n19"], "attributes": ["sigma", "epsilon"]}])
    with pytest.raises(InputError, match=r"selection 2 \(n99\): .*no parameter with id 'n99'"):
        select_parameters(ff, [{"ids": ["n19"]}, {"ids": ["n99"]}])
    with pytest.raises(InputError, match=r"selection 1 asks for attribute 'phase'"):
        select_parameters(ff, [{"handler": "Bonds", "attributes": ["phase"]}])
    wrt = select_parameters(ff, [{"ids": ["n19"], "attributes": ["rmin_half", "epsilon"]},
                                 {"ids": ["n-tip3p-O"], "attributes": ["sigma"]}])
    assert int(sum(np.sum(v) for a in wrt.values() for v in a.values())) == 3

def _copy_dataset(tmp_path, edit_meta=None, edit_arrays=None):
    d = tmp_path / "qm"
    d.mkdir(parents=True)
    meta = json.loads((QM / "manifest.json").read_text())
    meta["records"] = [r for r in meta["records"] if r["id"] in ("scan-ethanol", "conf-ethanol")]
    arrays = {k: v for k, v in np.load(QM / "qm_data.npz").items()
              if k.split("/")[0] in ("scan-ethanol", "conf-ethanol")}
    if edit_meta:
        edit_meta(meta)
    if edit_arrays:
        edit_arrays(arrays)
    (d / "manifest.json").write_text(json.dumps(meta))
    np.savez(d / "qm_data.npz", **arrays)
    return d


def test_bad_qm_records_are_named(tmp_path):
    def swap_atoms(a):
        x = a["conf-ethanol/positions"]
        x[:, [3, 8]] = x[:, [8, 3]]  # an H of the methyl and the hydroxyl H

    def nan_energy(a):
        a["scan-ethanol/energy"][3] = np.nan

    def wrong_elements(a):
        a["conf-ethanol/atomic_numbers"] = a["conf-ethanol/atomic_numbers"][::-1].copy()

    cases = [
        (dict(edit_meta=lambda m: m.pop("units")), "no 'units' table"),
        (dict(edit_meta=lambda m: m["units"].pop("gradient")), "no entry for 'gradient'"),
        (dict(edit_arrays=swap_atoms), r"record 'conf-ethanol' geometry 0: atoms \d and \d"
                                       " are bonded"),
        (dict(edit_arrays=nan_energy), "record 'scan-ethanol'.*energy of geometry 3 is not"
                                       " finite"),
        (dict(edit_arrays=wrong_elements), "record 'conf-ethanol'.*atomic numbers"),
    ]
    for k, (edits, pattern) in enumerate(cases):
        with pytest.raises(InputError, match=pattern):
            load_qm_dataset(_copy_dataset(tmp_path / str(k), **edits))


def test_target_that_turns_nan_is_named(tmp_path, monkeypatch):
    cfg = _config(tmp_path, "adam", iterations=3)
    from chronograd.fit import objective

    real = objective.Objective.target_value_and_grad

    def poisoned(self, k, phi):
        v, g = real(self, k, phi)
        return (float("nan"), g) if k == 1 and np.abs(phi).max() > 0 else (v, g)

    monkeypatch.setattr(objective.Objective, "target_value_and_grad", poisoned)
    with pytest.raises(FitError, match="target conformers gave a non-finite loss"):
        run_fit(cfg, progress=False)
    assert (tmp_path / "out/checkpoint.npz").exists()
    assert not (tmp_path / "out/summary.json").exists()
    shutil.rmtree(tmp_path / "out")


def test_cli_fit_reports_bad_config_without_traceback(tmp_path):
    from cli_helpers import run_cli

    cfg = _config(tmp_path)
    cfg.path.write_text(cfg.path.read_text().replace("iterations = 4", "iterations = -1"))
    result = run_cli("fit", cfg.path)
    assert result.code == 1
    message = result.one_line_error()  # one line, no traceback
    assert "line" in message and "[optimizer] iterations: must be positive" in message


def test_torsion_profile_relaxation_options_are_checked():
    ff = cg.ForceField(FF)
    (rec,) = load_qm_dataset(QM, records=["scan-ethanol"])
    with pytest.raises(InputError, match="relaxation must be 'none' or 'restrained'"):
        TorsionProfileTarget(ff, [rec], relaxation="relaxed")
    with pytest.raises(InputError, match="restrained relaxation compares energies only"):
        TorsionProfileTarget(ff, [rec], relaxation="restrained", force_weight=1.0)


@pytest.mark.slow
def test_restrained_relaxation_gradient_equals_central_differences():
    """ForceBalance's torsion-profile target: MM minimized at each scan point with the
    dihedral restrained; d loss / d theta by implicit differentiation equals central
    differences that re-minimize (to 1e-6 relative)."""
    ff = cg.ForceField(FF)
    (rec,) = load_qm_dataset(QM, records=["scan-ethanol"])
    target = TorsionProfileTarget(ff, [rec], relaxation="restrained", tolerance=1e-5)
    theta = ff.params
    g = np.asarray(jax.grad(target.loss)(theta)["ProperTorsions"]["k"])
    for i in np.argsort(-np.abs(g))[:2]:
        def loss(h, i=i):
            p = dict(theta, ProperTorsions=dict(theta["ProperTorsions"],
                                                k=theta["ProperTorsions"]["k"].at[i].add(h)))
            return float(target.loss(p))

        assert g[i] == pytest.approx((loss(1e-3) - loss(-1e-3)) / 2e-3, rel=1e-6)
    # the relaxed geometries keep the scanned dihedral (restraint) and lower the MM energy
    (u, xs), = target._relaxed_energies(theta)
    from chronograd.potentials.geometry import dihedral_angles

    phi = np.degrees(np.asarray(jax.vmap(lambda x: dihedral_angles(
        x, None, np.array([rec.dihedral]))[0])(xs)))
    d = (phi - rec.angles_deg + 180) % 360 - 180
    assert np.abs(d).max() < 1.0
    u_single, _ = target.records[0].energies_forces(theta)
    assert np.all(np.asarray(u) <= u_single + 1e-6)
    assert target.metrics(theta)["train"]["force_rmse"] is None
