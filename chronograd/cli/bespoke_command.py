"""``chronograd bespoke``: bespoke torsion parameters for one molecule, end to end.

    chronograd bespoke MOLECULE.sdf [--bond i-j ...] [--qm xtb|dft] [-o DIR]
        [--forcefield NAME] [--spacing 15] [--relaxation none|restrained] [--iterations 30]
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from chronograd.errors import InputError


def _parse_bond(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[-:,]\s*(\d+)\s*", text)
    if not m:
        raise InputError(f"--bond {text!r}: give two 0-based atom indices as i-j, e.g. 7-10")
    return int(m.group(1)), int(m.group(2))


def bespoke(
    molecule: Path = typer.Argument(..., help="SDF/MOL file with one molecule and its 3D"
                                    " coordinates (all hydrogens explicit)."),
    bond: list[str] | None = typer.Option(
        None, "--bond", help="A rotatable bond as i-j (0-based atom indices in file order);"
        " repeat for several. Default: every rotatable bond."),
    qm: str = typer.Option("xtb", "--qm", help="xtb (GFN2-xTB, tblite) | dft (B3LYP-D3BJ/"
                           "6-31G*, PySCF; pip install 'chronograd[qm]')."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default"
                                    " bespoke-STEM); rerunning with it resumes the scans."),
    forcefield: str = typer.Option("openff_unconstrained-2.2.1.offxml", "--forcefield",
                                   help="Base SMIRNOFF force field (.offxml path or name)."),
    spacing: int = typer.Option(15, "--spacing", help="Scan grid spacing (degrees)."),
    relaxation: str = typer.Option(
        "none", "--relaxation", help="none: MM single points at the QM geometries; restrained:"
        " MM minimized at each point with the dihedral restrained (ForceBalance's target)."),
    iterations: int = typer.Option(30, "--iterations", help="Most fit iterations per bond."),
):
    """Fragment around each bond, write molecule-specific torsion SMIRKS, scan the fragment
    with torsiondrive + geomeTRIC + the QM engine, fit the new torsion parameters, and write
    OUT/STEM-bespoke.offxml with report.md, report.json and profiles.png."""
    from chronograd.fit.bespoke import run_bespoke

    bonds = None if not bond else [_parse_bond(b) for b in bond]
    out = out if out is not None else Path(f"bespoke-{molecule.stem}")
    report = run_bespoke(molecule, bonds=bonds, qm=qm, out=out, forcefield=forcefield,
                         spacing=spacing, relaxation=relaxation, iterations=iterations,
                         log=typer.echo)
    typer.echo(f"wrote {out / report['output']}, {out / 'report.md'}")
