"""The ``chronograd`` command.

    chronograd energy --openmm SYSTEM.xml --positions FILE.pdb [--json] [--forces OUT.npy]

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


@app.command()
def energy(
    openmm_xml: Path = typer.Option(..., "--openmm", help="OpenMM System (XmlSerializer) file."),
    positions: Path = typer.Option(..., "--positions", help="PDB with positions (and CRYST1 box)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    forces_out: Path | None = typer.Option(
        None, "--forces", help="Write forces, an (N, 3) .npy array in kJ/mol/nm."
    ),
) -> None:
    """Evaluate the potential energy of an OpenMM System per term and in total (kJ/mol)."""
    import chronograd as cg
    from chronograd.interop.files import read_openmm_system_xml, read_pdb_positions

    try:
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
        if not system.periodic:
            box = None
        terms = system.energy_terms(pos, box)
        total, forces = system.energy_and_forces(pos, box)
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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
