"""The ``chronograd`` command.

    chronograd energy --openmm SYSTEM.xml --positions FILE.pdb [--json] [--forces OUT.npy]
    chronograd energy --ff NAME MOLECULE.sdf [--charges ...] [--json] [--grad-params OUT.csv]
    chronograd energy --ff NAME a.sdf b.sdf ... [--charges ...] [--json] [--forces DIR]
    chronograd energy --model default|DIR FILE.sdf ... [--json] [--forces OUT.npy|DIR]
    chronograd energy --potential DIR FILE.sdf ... [--json] [--forces OUT.npy|DIR]
    chronograd parameterize (MOLECULE.sdf | --smiles SMILES) (--ff NAME | --model M) -o F.json
    chronograd simulate (SYSTEM.json --positions PDB | --ff NAME (MOLECULE.sdf | --smiles S)
        [--solvate NM | --liquid N --density G_ML]) --steps N --timestep 2fs
        --temperature 300K [--pressure 1bar] [--minimize] [--integrator langevin|verlet|
        nose-hoover|brownian] -o traj.dcd [--report-every K] [--checkpoint F [--resume]]
    chronograd fit CONFIG.toml [--resume] [--stop-after N] [--quiet]
    chronograd qm validate DATASET
    chronograd qm import qcschema|torsiondrive|xyz FILES... --out DIR [--smiles MAPPED]
    chronograd --debug ...       # on an error, print the traceback too

One error path (``main``): every input problem (a ChronogradError) is printed as one line
naming the file, line, key, atom or parameter and how to fix it, with exit code 1; a usage
error (an unknown option, a value of the wrong type) as one line with exit code 2; anything
unexpected as one line ending in "run with --debug for the traceback", exit code 1. Inputs are
validated before any output is written.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import numpy as np
import typer

from chronograd.errors import ChronogradError, InputError
from chronograd.interop.files import atomic_write

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="chronograd: differentiable molecular simulation.",
)


def _add_qm() -> None:
    from chronograd.cli.qm_commands import qm_app

    app.add_typer(qm_app, name="qm")
    from chronograd.cli.bespoke_command import bespoke

    app.command("bespoke")(bespoke)


_add_qm()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="On an error, print the traceback."),
) -> None:
    """chronograd: differentiable molecular simulation (energies in kJ/mol, lengths in nm)."""


def _fail(message: str) -> NoReturn:
    raise InputError(message)


def check_output_path(path: Path | None, what: str) -> None:
    """Refuse an output path whose folder does not exist (before anything runs)."""
    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{path}: the folder {folder} for the {what} does not exist; create it"
                         " first or choose another path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the {what}")


FF_HELP = ("SMIRNOFF force field (name or path); several are combined when joined by commas,"
           " e.g. openff-2.2.1.offxml,tip4p_ew.offxml.")


@app.command()
def energy(
    molecules: list[Path] | None = typer.Argument(
        None, help="SDF/MOL molecule(s) (with --ff); several are evaluated together."),
    openmm_xml: Path | None = typer.Option(None, "--openmm", help="OpenMM System XML file."),
    positions: Path | None = typer.Option(None, "--positions", help="PDB for --openmm."),
    ff: str | None = typer.Option(None, "--ff", help=FF_HELP),
    model: str | None = typer.Option(
        None, "--model", help="A learned parameter model: 'default' or a model directory."),
    potential: Path | None = typer.Option(
        None, "--potential", help="A learned potential (model directory from chronograd fit);"
        " alone, or on the force field it was trained with."),
    charges: str = typer.Option(
        "auto", "--charges", help="from-file | am1bcc | gasteiger (auto: from-file if present)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    forces_out: Path | None = typer.Option(
        None, "--forces", help="Write forces, an (N, 3) .npy array in kJ/mol/nm (several"
        " inputs: a folder, one STEM.npy per input)."
    ),
    grad_params: Path | None = typer.Option(
        None, "--grad-params", help="With --ff: write dU/dtheta of every used parameter (CSV)."
    ),
) -> int:
    """Potential energy per term and in total (kJ/mol) of an OpenMM System (--openmm with
    --positions) or of molecules typed with a SMIRNOFF force field (--ff MOLECULE.sdf ...).
    With several molecules, --json prints JSON Lines, one object per input."""
    molecules = list(molecules or [])
    molecule = molecules[0] if molecules else None
    if model is not None and potential is not None:
        _fail("give --model or --potential, not both")
    if model is not None or potential is not None:
        return _learned_energy(model, ff, molecules, charges, as_json, forces_out, grad_params,
                               openmm_xml, potential)
    if ff is not None and openmm_xml is not None:
        _fail("give --openmm SYSTEM.xml --positions FILE.pdb, or --ff NAME MOLECULE.sdf, not"
              " both")
    if ff is None and (openmm_xml is None or positions is None):
        _fail("give --openmm SYSTEM.xml --positions FILE.pdb, or --ff NAME MOLECULE.sdf")
    if ff is not None and molecule is None:
        _fail("--ff needs a molecule: chronograd energy --ff NAME MOLECULE.sdf")
    if grad_params is not None and ff is None:
        _fail("--grad-params needs --ff (an OpenMM System has no force-field parameters)")
    if molecules and ff is None:
        _fail("molecule files need --ff NAME (an OpenMM System comes with --openmm)")
    if len(molecules) > 1:
        if grad_params is not None:
            _fail("--grad-params takes one molecule; give one file")
        from chronograd.cli.energy_batch import check_forces_folder, energies_of_files, report
        from chronograd.forcefield import ForceField

        check_forces_folder(forces_out, molecules)
        force_field = ForceField(*[n.strip() for n in ff.split(",")])
        return report(energies_of_files(force_field, molecules, charges, forces_out), as_json)
    if forces_out is not None and forces_out.suffix != ".npy":
        _fail(f"{forces_out}: the forces file must end in .npy")
    check_output_path(forces_out, "forces")
    check_output_path(grad_params, "parameter gradients")
    if ff is not None:
        system, pos, box, force_field = _ff_system(ff, molecule, charges)
    else:
        system, pos, box = _openmm_system(openmm_xml, positions)
    terms = system.energy_terms(pos, box)
    total, forces = system.energy_and_forces(pos, box)
    if not np.isfinite(total):
        _fail(f"the energy is not finite ({total}); check the structure for overlapping atoms")
    if grad_params is not None:
        from chronograd.cli.smirnoff_commands import write_parameter_gradients

        atomic_write(grad_params, lambda tmp: write_parameter_gradients(tmp, force_field,
                                                                        system, pos))
    if forces_out is not None:
        def save_forces(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, forces)

        atomic_write(forces_out, save_forces)
    if as_json:
        typer.echo(json.dumps({"total": total, "terms": terms, "units": "kJ/mol"}))
        return 0
    width = max(len(k) for k in [*terms, "total"])
    for name, value in terms.items():
        typer.echo(f"{name:<{width}}  {value:18.6f} kJ/mol")
    typer.echo(f"{'total':<{width}}  {total:18.6f} kJ/mol")
    if forces_out is not None:
        typer.echo(f"forces ({forces.shape[0]}, 3) kJ/mol/nm written to {forces_out}")
    return 0


def _learned_energy(model, ff, molecules, charges, as_json, forces_out, grad_params,
                    openmm_xml, potential=None) -> int:
    """``energy --model`` / ``--potential``: learned systems of every input, evaluated in one
    batch."""
    from chronograd.cli.energy_batch import check_forces_folder, energies_of_files, report
    from chronograd.ml.model_files import LearnedBuilder, PotentialBuilder

    flag = "--model" if potential is None else "--potential"
    if openmm_xml is not None:
        _fail(f"{flag} types molecules; it does not apply to --openmm systems")
    if not molecules:
        _fail(f"{flag} needs molecule files: chronograd energy {flag} DIR MOLECULE.sdf")
    if charges != "auto" and potential is None:
        _fail("--charges does not apply with --model: the model predicts the charges")
    if grad_params is not None:
        _fail("--grad-params needs --ff (it writes force-field parameter gradients)")
    if len(molecules) > 1:
        check_forces_folder(forces_out, molecules)
    elif forces_out is not None:
        if forces_out.suffix != ".npy":
            _fail(f"{forces_out}: the forces file must end in .npy")
        check_output_path(forces_out, "forces")
    builder = LearnedBuilder(model, ff) if potential is None else PotentialBuilder(potential,
                                                                                  ff)
    records = energies_of_files(builder, molecules, charges, forces_out,
                                single_file=len(molecules) == 1)
    return report(records, as_json)


def _openmm_system(openmm_xml: Path, positions: Path):
    from chronograd.interop.files import read_openmm_system_xml, read_pdb_positions
    from chronograd.interop.openmm import from_openmm

    omm = read_openmm_system_xml(openmm_xml)
    pos, box = read_pdb_positions(positions)
    system = from_openmm(omm, source=str(openmm_xml))
    if pos.shape[0] != system.n_atoms:
        _fail(
            f"{openmm_xml} has {system.n_atoms} particles but {positions} has"
            f" {pos.shape[0]} atoms; use the PDB the system was built from"
        )
    if system.periodic and box is None:
        _fail(
            f"{openmm_xml} is periodic (PME, Ewald or a periodic cutoff) but {positions}"
            " has no CRYST1 record; add the box as a CRYST1 line"
        )
    box = box if system.periodic else None
    pos, box = system.check_inputs(pos, box, where=str(positions))
    return system, pos, box


def _ff_system(ff_name: str, molecule: Path | None, charges: str, smiles: str | None = None):
    from chronograd.cli.smirnoff_commands import load_force_field_and_molecule, resolve_charges

    force_field, mol = load_force_field_and_molecule(ff_name, molecule, smiles)
    system = force_field.create_system(mol, charges=resolve_charges(mol, charges))
    return system, mol.positions, None, force_field


@app.command()
def parameterize(
    molecule: Path | None = typer.Argument(None, help="SDF/MOL molecule."),
    smiles: str | None = typer.Option(None, "--smiles", help="SMILES instead of a file."),
    ff: str | None = typer.Option(None, "--ff", help=FF_HELP),
    model: str | None = typer.Option(
        None, "--model", help="A learned parameter model: 'default' or a model directory."),
    output: Path = typer.Option(..., "-o", "--output", help="System JSON to write."),
    charges: str = typer.Option(
        "auto", "--charges", help="from-file | am1bcc | gasteiger (auto: from-file if present)."
    ),
) -> None:
    """Type a molecule with a SMIRNOFF force field (or a learned model) and save the System
    as JSON (slot values; a learned system's predicted parameters)."""
    from chronograd.system.serialize import save

    check_output_path(output, "system JSON")
    if model is not None:
        from chronograd.cli.smirnoff_commands import load_molecule
        from chronograd.ml.model_files import LearnedBuilder

        if charges != "auto":
            _fail("--charges does not apply with --model: the model predicts the charges")
        builder = LearnedBuilder(model, ff)
        system = builder.create_system(load_molecule(molecule, smiles))
    elif ff is None:
        _fail("give --ff NAME or --model default|DIR")
    else:
        system, _, _, _ = _ff_system(ff, molecule, charges, smiles)
    save(system, output)  # written to a temporary file, then moved: nothing half-written
    typer.echo(f"wrote {output}: {system.n_atoms} atoms, terms {', '.join(system.term_names())}")


@app.command()
def simulate(
    source: Path | None = typer.Argument(
        None, help="SYSTEM.json (with --positions), or with --ff the MOLECULE.sdf."),
    positions: Path | None = typer.Option(None, "--positions", help="PDB for SYSTEM.json."),
    ff: str | None = typer.Option(None, "--ff", help=FF_HELP),
    potential: Path | None = typer.Option(
        None, "--potential", help="A learned potential (model directory): alone, or on the"
        " force field it was trained with."),
    molecule: Path | None = typer.Option(None, "--molecule", help="SDF/MOL molecule (--ff)."),
    smiles: str | None = typer.Option(None, "--smiles", help="SMILES instead of a molecule."),
    charges: str = typer.Option("auto", "--charges", help="from-file | am1bcc | gasteiger."),
    solvate: float | None = typer.Option(None, "--solvate", help="Water padding (nm)."),
    liquid: int | None = typer.Option(None, "--liquid", help="Neat liquid of N molecules."),
    density: float | None = typer.Option(None, "--density", help="Starting density, g/mL."),
    steps: int = typer.Option(..., "--steps", help="Total number of steps."),
    timestep: str = typer.Option("2fs", "--timestep", help="e.g. 2fs, 0.001ps."),
    temperature: str = typer.Option("300K", "--temperature", help="e.g. 300K."),
    pressure: str | None = typer.Option(None, "--pressure", help="e.g. 1bar (NPT)."),
    friction: float = typer.Option(1.0, "--friction", help="Langevin friction, 1/ps."),
    integrator: str = typer.Option("langevin", "--integrator",
                                   help="langevin | verlet | nose-hoover | brownian."),
    minimize: bool = typer.Option(False, "--minimize", help="Minimize before dynamics."),
    output: Path = typer.Option(..., "-o", "--output", help="Trajectory (.dcd or .xtc)."),
    report_every: int = typer.Option(500, "--report-every", help="Steps between frames."),
    state_data: Path | None = typer.Option(None, "--state-data", help="CSV of energies etc."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Checkpoint file."),
    resume: bool = typer.Option(False, "--resume", help="Continue from --checkpoint."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same run)."),
    precision: str = typer.Option("double", "--precision",
                                  help="double | mixed (float32 forces, float64 state)."),
    pme_grid: str = typer.Option(
        "fft", "--pme-grid", help="fft: PME grid sizes rounded up for fast FFTs, as OpenMM's"
        " CPU platform runs them | exact: the sizes the Ewald tolerance gives, as OpenMM's"
        " Reference platform runs them."),
) -> None:
    """Run molecular dynamics; writes the trajectory, a PDB of the start and (optionally) a
    state-data CSV and checkpoints. Units: nm, ps, K, bar. Every option and input is checked
    before anything is written."""
    from chronograd.cli import simulate_command as sc

    options = sc.check_options(
        timestep=timestep, temperature=temperature, pressure=pressure, friction=friction,
        steps=steps, report_every=report_every, integrator=integrator, output=output,
        state_data=state_data, checkpoint=checkpoint, resume=resume, seed=seed,
        solvate=solvate, liquid=liquid, density=density, precision=precision,
        pme_grid=pme_grid)
    if ff is not None or potential is not None:
        if source is not None and (molecule is not None or smiles is not None):
            _fail("give the molecule once: MOLECULE.sdf, --molecule or --smiles")
        if positions is not None:
            _fail("--positions belongs to SYSTEM.json; with --ff the molecule file gives the"
                  " coordinates")
        mol_file = source if source is not None else molecule
        if mol_file is not None and mol_file.suffix.lower() == ".json":
            _fail(f"{mol_file}: with --ff give a molecule (SDF/MOL); a SYSTEM.json is run"
                  " without --ff: chronograd simulate SYSTEM.json --positions FILE.pdb")
        system, pos, box, mols = sc.build_from_force_field(ff, mol_file, smiles, charges,
                                                           solvate, liquid, density,
                                                           potential=potential)
    elif source is not None:
        if molecule is not None or smiles is not None or solvate is not None or \
                liquid is not None:
            _fail("--molecule, --smiles, --solvate and --liquid need --ff")
        if positions is None:
            _fail("SYSTEM.json needs --positions FILE.pdb")
        system, pos, box, mols = sc.load_system(source, positions)
    else:
        _fail("give SYSTEM.json --positions FILE.pdb, or --ff NAME (MOLECULE.sdf | --smiles S)")
    state = sc.run_simulation(system=system, positions=pos, box=box, molecules=mols,
                              minimize_first=minimize, echo=typer.echo, **options)
    typer.echo(f"done: step {int(state.step)}, potential {float(state.potential_energy):.2f}"
               f" kJ/mol; trajectory {output}")


@app.command()
def fit(
    config: Path = typer.Argument(..., help="Fit configuration (TOML); see docs/fitting.md."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the output directory's"
                                " checkpoint."),
    stop_after: int | None = typer.Option(None, "--stop-after", help="Run at most N iterations"
                                          " now; continue later with --resume."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Fit force-field parameters to QM targets: writes the fitted .offxml, log.jsonl,
    summary.json and report.md (with plots) to the config's output directory. A config with
    a [model] table trains a learned parameter model instead (docs/learned.md)."""
    from chronograd.fit import load_config, run_fit
    from chronograd.ml.train_config import is_model_config

    if stop_after is not None and stop_after < 1:
        _fail(f"--stop-after must be at least 1, got {stop_after}")
    if is_model_config(config):
        return _train_model(config, resume, stop_after, quiet)
    cfg = load_config(config)
    try:
        summary = run_fit(cfg, resume=resume, stop_after=stop_after, progress=not quiet)
    except KeyboardInterrupt:
        _fail("interrupted; the last checkpoint is kept (continue with --resume)")
    if not summary["finished"]:
        typer.echo(f"stopped after iteration {summary['iteration']} (loss {summary['loss']:.6g});"
                   " continue with --resume")
        return
    typer.echo(f"objective {summary['loss_initial']:.6g} -> {summary['loss_final']:.6g} in"
               f" {summary['iterations']} iterations; output in {summary['output']}")
    from chronograd.fit.report import metric_rows

    for name, split, _n, key, a, b in metric_rows(summary):
        typer.echo(f"  {name} [{split}] {key} {a:.4g} -> {b:.4g}")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def _error(message: str) -> None:
    typer.echo(f"error: {_one_line(message)}", err=True)


def _train_model(config: Path, resume: bool, stop_after: int | None, quiet: bool) -> None:
    from chronograd.ml.train_config import load_train_config
    from chronograd.ml.train_runner import run_training

    cfg = load_train_config(config)
    try:
        summary = run_training(cfg, resume=resume, stop_after=stop_after, progress=not quiet)
    except KeyboardInterrupt:
        _fail("interrupted; the last checkpoint is kept (continue with --resume)")
    if not summary["finished"]:
        typer.echo(f"stopped in stage {summary['stage']} after epoch {summary['epoch']} (loss"
                   f" {summary['loss']:.6g}); continue with --resume")
        return
    for s in summary["stages"]:
        metrics = s["metrics"].get("validation") or s["metrics"]["train"]
        typer.echo(f"{s['name']}: {s['epochs']} epochs; " + ", ".join(
            f"{k} {v:.4g}" for k, v in metrics.items()))
    if "test" in summary:
        typer.echo("held out: " + ", ".join(f"{k} {v:.4g}" for k, v in
                                            summary["test"]["overall"].items()))
    typer.echo(f"model written to {summary['output']}/model")


def compilation_cache_dir() -> Path | None:
    """Where the command line keeps XLA's compiled programs between runs (JAX's persistent
    compilation cache): ``$CHRONOGRAD_CACHE_DIR``, else ``$XDG_CACHE_HOME/chronograd/xla``
    (``~/.cache/chronograd/xla``); ``CHRONOGRAD_CACHE_DIR=off`` turns it off. A second run of
    the same system skips its compiles (the first step of a Sage water box: seconds)."""
    chosen = os.environ.get("CHRONOGRAD_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "0", "off", "none") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chronograd" / "xla"


def _use_compilation_cache() -> None:
    path = compilation_cache_dir()
    if path is None:
        return
    import jax

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: compile as before
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 bad input or failure, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _use_compilation_cache()
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="chronograd", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.exceptions.TyperException as exc:  # usage: unknown option, wrong type, ...
        if type(exc).__name__ == "NoArgsIsHelpError":
            return 0  # the help has been shown
        if debug:
            traceback.print_exc()
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _error(f"{message} (see chronograd --help)")
        return int(getattr(exc, "exit_code", 2))
    except typer.exceptions.Abort:
        _error("interrupted")
        return 130
    except ChronogradError as exc:
        if debug:
            traceback.print_exc()
        _error(str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into a line
        if debug:
            traceback.print_exc()
        _error(f"unexpected {type(exc).__name__}: {exc}; this is a bug in chronograd or an"
               " input it does not check yet: run with --debug for the traceback")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

