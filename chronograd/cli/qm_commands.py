"""``chronograd qm``: bring QM data in and check it.

    chronograd qm validate DATASET
    chronograd qm import qcschema RESULT.json ... --out DIR [--smiles MAPPED] [--id NAME]
    chronograd qm import torsiondrive STATE.json --out DIR --smiles MAPPED [--id NAME]
    chronograd qm import xyz FRAMES.xyz --out DIR --smiles MAPPED [--energies FILE]
        [--energy-unit hartree] [--gradients FILE] [--gradient-unit hartree/bohr]
"""

from __future__ import annotations

from pathlib import Path

import typer

from chronograd.errors import InputError

qm_app = typer.Typer(no_args_is_help=True, help="QM data: import (QCSchema, TorsionDrive,"
                     " XYZ) to chronograd-qm/1, and validate a dataset.")
FORMATS = ("qcschema", "torsiondrive", "xyz")


@qm_app.command("validate")
def validate(dataset: Path = typer.Argument(..., help="dataset folder or its manifest.json")):
    """List what a chronograd-qm/1 dataset holds and every problem found (exit 1 if any)."""
    from chronograd.fit.qm_import import validate_qm_dataset

    lines, problems = validate_qm_dataset(dataset)
    for line in lines:
        typer.echo(line)
    if problems:
        for p in problems[1:]:
            typer.echo(f"error: {p}", err=True)
        raise InputError(f"{problems[0]}" + (f" (and {len(problems) - 1} more problems above)"
                                               if len(problems) > 1 else ""))
    typer.echo(f"{dataset}: {len(lines)} records, no problems")


@qm_app.command("import")
def import_(
    fmt: str = typer.Argument(..., help="qcschema | torsiondrive | xyz"),
    files: list[Path] = typer.Argument(..., help="input files (qcschema: one record from all)"),
    out: Path = typer.Option(..., "--out", "-o", help="new dataset folder"),
    smiles: str | None = typer.Option(None, "--smiles", help="mapped SMILES (atom order)"),
    record_id: str | None = typer.Option(None, "--id", help="record id (default: file stem)"),
    energies: Path | None = typer.Option(None, "--energies", help="xyz: one energy per line"),
    energy_unit: str = typer.Option("hartree", "--energy-unit"),
    position_unit: str = typer.Option("angstrom", "--position-unit"),
    gradients: Path | None = typer.Option(None, "--gradients", help="xyz: gradient frames"),
    gradient_unit: str = typer.Option("hartree/bohr", "--gradient-unit"),
    method: str = typer.Option("unknown", "--method"),
    basis: str = typer.Option("unknown", "--basis"),
):
    """Convert QM results to a chronograd-qm/1 dataset (checked, written whole or not at all)."""
    from chronograd.fit import qm_import as qi

    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: the folder exists and is not empty; choose a new one")
    if fmt == "qcschema":
        records = [qi.read_qcschema(files, mapped_smiles=smiles, record_id=record_id)]
    elif fmt == "torsiondrive":
        records = [qi.read_torsiondrive(f, mapped_smiles=smiles,
                                        record_id=record_id if len(files) == 1 else None)
                   for f in files]
    else:
        if smiles is None:
            raise InputError("xyz import needs --smiles (the mapped SMILES of the atom order)")
        if len(files) != 1:
            raise InputError("xyz import reads one file per record")
        records = [qi.read_xyz(files[0], mapped_smiles=smiles, energies=energies,
                               energy_unit=energy_unit, position_unit=position_unit,
                               gradients=gradients, gradient_unit=gradient_unit,
                               record_id=record_id)]
    manifest = qi.write_qm_dataset(records, out, method=method, basis=basis)
    for r in records:
        typer.echo(f"{r.id}: {len(r.energy)} geometries, "
                   f"{'energies and forces' if r.has_forces else 'energies only'}")
    typer.echo(f"wrote {manifest}")
