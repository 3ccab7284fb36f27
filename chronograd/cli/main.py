"""The ``chronograd`` command.

    chronograd energy --openmm SYSTEM.xml --positions FILE.pdb [--json] [--forces OUT.npy]
    chronograd energy --ff NAME MOLECULE.sdf [--charges ...] [--json] [--grad-params OUT.csv]
    chronograd parameterize (MOLECULE.sdf | --smiles SMILES) --ff NAME -o system.json
    chronograd simulate (SYSTEM.json --positions PDB | --ff NAME (MOLECULE.sdf | --smiles S)
        [--solvate NM | --liquid N --density G_ML]) --steps N --timestep 2fs
        --temperature 300K [--pressure 1bar] [--minimize] [--integrator langevin|verlet|
        nose-hoover|brownian] -o traj.dcd [--report-every K] [--checkpoint F [--resume]]
    chronograd fit CONFIG.toml [--resume] [--stop-after N] [--quiet]

Errors are printed as one message naming the problem (file, line, atom) with exit code 1;
no traceback for input problems.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="chronograd: differentiable molecular simulation.",
)


@app.callback()
def _root() -> None:
    """chronograd: differentiable molecular simulation (energies in kJ/mol, lengths in nm)."""


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


FF_HELP = ("SMIRNOFF force field (name or path); several are combined when joined by commas,"
           " e.g. openff-2.2.1.offxml,tip4p_ew.offxml.")


@app.command()
def energy(
    molecule: Path | None = typer.Argument(None, help="SDF/MOL molecule (with --ff)."),
    openmm_xml: Path | None = typer.Option(None, "--openmm", help="OpenMM System XML file."),
    positions: Path | None = typer.Option(None, "--positions", help="PDB for --openmm."),
    ff: str | None = typer.Option(None, "--ff", help=FF_HELP),
    charges: str = typer.Option(
        "auto", "--charges", help="from-file | am1bcc | gasteiger (auto: from-file if present)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    forces_out: Path | None = typer.Option(
        None, "--forces", help="Write forces, an (N, 3) .npy array in kJ/mol/nm."
    ),
    grad_params: Path | None = typer.Option(
        None, "--grad-params", help="With --ff: write dU/dtheta of every used parameter (CSV)."
    ),
) -> None:
    """Potential energy per term and in total (kJ/mol) of an OpenMM System (--openmm with
    --positions) or of a molecule typed with a SMIRNOFF force field (--ff MOLECULE.sdf)."""
    import chronograd as cg

    try:
        if ff is not None:
            system, pos, box, force_field = _ff_system(ff, molecule, charges)
        elif openmm_xml is not None and positions is not None:
            system, pos, box = _openmm_system(openmm_xml, positions)
        else:
            _fail("give --openmm SYSTEM.xml --positions FILE.pdb, or --ff NAME MOLECULE.sdf")
        terms = system.energy_terms(pos, box)
        total, forces = system.energy_and_forces(pos, box)
        if grad_params is not None:
            if ff is None:
                _fail("--grad-params needs --ff (an OpenMM System has no force-field parameters)")
            from chronograd.cli.smirnoff_commands import write_parameter_gradients

            write_parameter_gradients(grad_params, force_field, system, pos)
    except cg.ChronogradError as exc:
        _fail(str(exc))
    if forces_out is not None:
        np.save(forces_out, forces)
    if as_json:
        typer.echo(json.dumps({"total": total, "terms": terms, "units": "kJ/mol"}))
        return
    width = max(len(k) for k in [*terms, "total"])
    for name, value in terms.items():
        typer.echo(f"{name:<{width}}  {value:18.6f} kJ/mol")
    typer.echo(f"{'total':<{width}}  {total:18.6f} kJ/mol")
    if forces_out is not None:
        typer.echo(f"forces ({forces.shape[0]}, 3) kJ/mol/nm written to {forces_out}")


def _openmm_system(openmm_xml: Path, positions: Path):
    import chronograd as cg
    from chronograd.interop.files import read_openmm_system_xml, read_pdb_positions

    omm = read_openmm_system_xml(openmm_xml)
    pos, box = read_pdb_positions(positions)
    system = cg.from_openmm(omm)
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
    return system, pos, box if system.periodic else None


def _ff_system(ff_name: str, molecule: Path | None, charges: str, smiles: str | None = None):
    from chronograd.cli.smirnoff_commands import load_molecule, resolve_charges
    from chronograd.forcefield import ForceField

    mol = load_molecule(molecule, smiles)
    if mol.positions is None:
        _fail(f"{molecule}: the molecule has no coordinates")
    force_field = ForceField(*[n.strip() for n in ff_name.split(",")])
    system = force_field.create_system(mol, charges=resolve_charges(mol, charges))
    return system, mol.positions, None, force_field


@app.command()
def parameterize(
    molecule: Path | None = typer.Argument(None, help="SDF/MOL molecule."),
    smiles: str | None = typer.Option(None, "--smiles", help="SMILES instead of a file."),
    ff: str = typer.Option(..., "--ff", help=FF_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="System JSON to write."),
    charges: str = typer.Option(
        "auto", "--charges", help="from-file | am1bcc | gasteiger (auto: from-file if present)."
    ),
) -> None:
    """Type a molecule with a SMIRNOFF force field and save the System as JSON."""
    import chronograd as cg

    try:
        system, _, _, _ = _ff_system(ff, molecule, charges, smiles)
        tmp = output.with_name(output.name + ".tmp")
        cg.save(system, tmp)
        tmp.replace(output)  # nothing half-written
    except cg.ChronogradError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {output}: {system.n_atoms} atoms, terms {', '.join(system.term_names())}")


@app.command()
def simulate(
    system_json: Path | None = typer.Argument(None, help="System JSON (with --positions)."),
    positions: Path | None = typer.Option(None, "--positions", help="PDB for SYSTEM.json."),
    ff: str | None = typer.Option(None, "--ff", help=FF_HELP),
    molecule: Path | None = typer.Option(None, "--molecule", help="SDF/MOL molecule (--ff)."),
    smiles: str | None = typer.Option(None, "--smiles", help="SMILES instead of --molecule."),
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
) -> None:
    """Run molecular dynamics; writes the trajectory, a PDB of the start and (optionally) a
    state-data CSV and checkpoints. Units: nm, ps, K, bar."""
    import chronograd as cg
    from chronograd.cli import simulate_command as sc
    from chronograd.dynamics.runner import SimulationError

    try:
        dt = sc.parse_quantity(timestep, "time", "ps")
        temp = sc.parse_quantity(temperature, "temperature", "K")
        press = None if pressure is None else sc.parse_quantity(pressure, "pressure", "bar")
        if system_json is not None:
            if ff is not None:
                _fail("give SYSTEM.json or --ff, not both")
            if positions is None:
                _fail("SYSTEM.json needs --positions FILE.pdb")
            from chronograd.interop.files import read_pdb_positions

            system = cg.load(system_json)
            pos, box = read_pdb_positions(positions)
            box = box if system.periodic else None
            mols = None
        elif ff is not None:
            system, pos, box, mols = sc.build_from_force_field(ff, molecule, smiles, charges,
                                                               solvate, liquid, density)
        else:
            _fail("give SYSTEM.json --positions FILE.pdb, or --ff NAME (--molecule F |"
                  " --smiles S)")
        if mols is not None and not resume:
            pdb = output.with_suffix(".pdb")
            full = system.check_inputs(pos, box)[0]
            sc.write_topology_pdb(pdb, mols, full, box, system.n_atoms)
            typer.echo(f"wrote {pdb} (starting structure and topology)")
        state = sc.run_simulation(
            system=system, positions=pos, box=box, steps=steps, timestep=dt,
            temperature=temp, pressure=press, friction=friction, integrator=integrator,
            minimize_first=minimize, output=output, report_every=report_every,
            checkpoint=checkpoint, resume=resume, seed=seed, state_data=state_data,
            echo=typer.echo)
    except SimulationError as exc:
        _fail(str(exc))
    except cg.ChronogradError as exc:
        _fail(str(exc))
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
    summary.json and report.md (with plots) to the config's output directory."""
    import chronograd as cg
    from chronograd.fit import load_config, run_fit

    try:
        cfg = load_config(config)
        summary = run_fit(cfg, resume=resume, stop_after=stop_after, progress=not quiet)
    except cg.ChronogradError as exc:
        _fail(str(exc))
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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
