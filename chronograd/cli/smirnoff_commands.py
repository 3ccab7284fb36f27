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
_UNITS = {
    ("Bonds", "length"): "nm", ("Bonds", "k"): "kJ/mol/nm^2", ("Angles", "angle"): "rad",
    ("Angles", "k"): "kJ/mol/rad^2", ("ProperTorsions", "k"): "kJ/mol",
    ("ProperTorsions", "phase"): "rad", ("ImproperTorsions", "k"): "kJ/mol",
    ("ImproperTorsions", "phase"): "rad", ("vdW", "epsilon"): "kJ/mol", ("vdW", "sigma"): "nm",
    ("vdW", "rmin_half"): "nm", ("LibraryCharges", "charge"): "e",
    ("ChargeIncrementModel", "charge_increment"): "e", ("Constraints", "distance"): "nm",
}


def write_parameter_gradients(path: Path, ff, system, positions) -> int:
    """CSV of id, handler, attribute, value, gradient (internal units) for used parameters."""
    from chronograd.system.source import theta_offsets, used_theta_rows

    grad = jax.grad(system.energy_fn(), argnums=2)(np.asarray(positions), None, ff.params)
    offsets = theta_offsets(ff.params)
    used = set(used_theta_rows(system.source).tolist())
    n = 0
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "handler", "attribute", "value", "gradient", "value_unit",
                         "gradient_unit"])
        for handler, attrs in ff.row_info.items():
            for attr, info in attrs.items():
                values = np.asarray(ff.params[handler][attr])
                g = np.asarray(grad[handler][attr])
                for pos, pid in enumerate(info.ids):
                    if offsets[(handler, attr)] + pos not in used:
                        continue
                    unit = _UNITS[(handler, attr)]
                    writer.writerow([pid, handler, info.file_attribute[pos], float(values[pos]),
                                     float(g[pos]), unit, f"kJ/mol per {unit}"])
                    n += 1
    return n
