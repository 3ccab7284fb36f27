"""CLI helpers for force-field systems: load molecules, build, report parameter gradients."""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import numpy as np

from chronograd.errors import InputError


def load_molecule(path: Path | None, smiles: str | None):
    from chronograd.topology import Molecule

    if (path is None) == (smiles is None):
        raise InputError("give either a MOLECULE file (SDF/MOL) or --smiles, not both")
    if smiles is not None:
        return Molecule.from_smiles(smiles)
    molecules = Molecule.from_sdf(path)
    if len(molecules) != 1:
        raise InputError(f"{path}: expected one molecule, found {len(molecules)}")
    return molecules[0]


def load_force_field_and_molecule(ff_names: str, path: Path | None, smiles: str | None):
    """(ForceField, Molecule) for the CLI: force fields joined by commas, and one molecule
    with coordinates that an energy can use (finite, no two atoms at one position)."""
    from chronograd.forcefield import ForceField
    from chronograd.space.positions import check_positions

    mol = load_molecule(path, smiles)
    if mol.positions is None:
        raise InputError(f"{path}: the molecule has no coordinates")
    check_positions(mol.positions, where=str(path) if path else None)
    return ForceField(*[n.strip() for n in ff_names.split(",")]), mol


def resolve_charges(molecule, charges: str) -> str | None:
    """"auto": the file's charges if it has them, else the force field's charge model."""
    if charges == "auto":
        return "from-file" if molecule.partial_charges is not None else None
    return charges


# Internal units of each theta attribute (the gradient is kJ/mol per this unit).


def write_parameter_gradients(path: Path, ff, system, positions) -> int:
    """CSV of the parameters the system uses: id, SMIRKS, handler, attribute, value, dU/dtheta
    and the scaled sensitivity dU/dtheta x prior width (kJ/mol per prior width: ranks
    parameters of different units on one scale), in internal units."""
    from chronograd.system.source import theta_offsets, used_theta_rows

    grad = jax.grad(system.energy_fn(), argnums=2)(np.asarray(positions), None, ff.params)
    offsets = theta_offsets(ff.params)
    used = set(used_theta_rows(system.source).tolist())
    seen: dict = {}
    n = 0
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "smirks", "handler", "attribute", "value", "gradient",
                         "scaled_sensitivity", "value_unit", "gradient_unit"])
        for row in ff.parameter_table(gradient=grad):
            key = (row["handler"], row["attribute"])
            pos = seen[key] = seen.get(key, -1) + 1
            if offsets[key] + pos not in used:
                continue
            s = row["scaled_sensitivity"]
            writer.writerow([row["id"], row["smirks"], row["handler"], row["file_attribute"],
                             row["value"], row["gradient"], "" if s is None else s,
                             row["unit"], f"kJ/mol per {row['unit']}"])
            n += 1
    return n
