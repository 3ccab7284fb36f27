"""``chronograd energy --ff FF a.sdf b.sdf ...``: many molecules in one process.

Every file is read and typed on its own, so a malformed file or a molecule the force field
cannot type is reported by name while the others are still evaluated. The typed systems are
stacked (``system/batch.py``): one compiled program per size bucket evaluates all of them.
Output: JSON Lines with ``--json``, one object per input in input order,
``{"file", "total", "terms", "units"}`` or ``{"file", "error"}``; otherwise a table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import typer

from chronograd.errors import ChronogradError


def _typed_system(force_field, path: Path, charges: str):
    """(system, positions) of the one molecule in ``path``; raises ChronogradError."""
    from chronograd.cli.smirnoff_commands import load_molecule, resolve_charges
    from chronograd.space.positions import check_positions

    mol = load_molecule(path, None)
    if mol.positions is None:
        raise ChronogradError(f"{path}: the molecule has no coordinates")
    check_positions(mol.positions, where=str(path))
    try:
        system = force_field.create_system(mol, charges=resolve_charges(mol, charges))
    except ChronogradError as err:
        message = str(err)
        raise type(err)(message if message.startswith(str(path)) else f"{path}: {message}") \
            from err
    return system, np.asarray(mol.positions)


def check_forces_folder(folder: Path | None, paths: list[Path]) -> None:
    """With several inputs ``--forces`` names an existing folder; one STEM.npy per input, so
    stems must differ."""
    from chronograd.errors import InputError

    if folder is None:
        return
    if not folder.is_dir():
        raise InputError(f"{folder}: with several inputs --forces names an existing folder"
                         " (one STEM.npy per input); create it first")
    stems = [p.stem for p in paths]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise InputError(f"two inputs are named {twice[0]!r}; their forces would both be"
                         f" {folder / (twice[0] + '.npy')}; rename one")


def energies_of_files(force_field, paths: list[Path], charges: str,
                      forces_out: Path | None = None, *, single_file: bool = False) -> list[dict]:
    """One record per path: ``{"file", "total", "terms", "units"}`` or ``{"file", "error"}``;
    with ``forces_out``, forces are written there (a folder: one STEM.npy per input; with
    ``single_file``, the .npy file itself)."""
    from chronograd.system.batch import stack_systems

    records: list[dict] = [{"file": str(p)} for p in paths]
    good, systems, positions = [], [], []
    for k, path in enumerate(paths):
        try:
            system, x = _typed_system(force_field, path, charges)
        except ChronogradError as err:
            records[k]["error"] = str(err)
            continue
        good.append(k)
        systems.append(system)
        positions.append(x)
    # systems that cannot share a batch with the first (e.g. another charge model) go alone
    while systems:
        names = [str(paths[k]) for k in good]
        try:
            batch = stack_systems(systems, names=names)
        except ChronogradError as err:
            bad = _first_named(err, names)
            if bad is None:
                raise
            records[good[bad]]["error"] = str(err)
            del good[bad], systems[bad], positions[bad]
            continue
        terms = batch.energy_terms(positions)
        forces = batch.energies_and_forces(positions)[1] if forces_out is not None else None
        for row, k in enumerate(good):
            values = {name: float(v[row]) for name, v in terms.items()}
            total = float(sum(values.values()))
            if not np.isfinite(total):
                records[k]["error"] = (f"{paths[k]}: the energy is not finite ({total}); check"
                                       " the structure for overlapping atoms")
                continue
            records[k].update({"total": total, "terms": values, "units": "kJ/mol"})
            if forces is not None:
                target = forces_out if single_file else forces_out / f"{paths[k].stem}.npy"
                _save_npy(target, forces[row])
                records[k]["forces"] = str(target)
        break
    return records


def _save_npy(path: Path, array) -> None:
    from chronograd.interop.files import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array))

    atomic_write(path, write)


def _first_named(err: ChronogradError, names: list[str]) -> int | None:
    message = str(err)
    for k, name in enumerate(names):
        if message.startswith(f"{name}:"):
            return k
    return None


def report(records: list[dict], as_json: bool) -> int:
    """Print the records; errors also go to stderr. Returns the exit code (1 if any failed)."""
    failed = [r for r in records if "error" in r]
    if as_json:
        for r in records:
            typer.echo(json.dumps(r))
    else:
        names = [n for r in records if "terms" in r for n in r["terms"]]
        columns = list(dict.fromkeys(names))
        width = max(len(r["file"]) for r in records)
        typer.echo(f"{'file':<{width}}  " + "  ".join(f"{c:>16}" for c in [*columns, "total"])
                   + "  (kJ/mol)")
        for r in records:
            if "error" in r:
                typer.echo(f"{r['file']:<{width}}  error (see below)")
                continue
            cells = [r["terms"].get(c, 0.0) for c in columns] + [r["total"]]
            typer.echo(f"{r['file']:<{width}}  " + "  ".join(f"{v:16.6f}" for v in cells))
    for r in failed:
        print(f"error: {r['error']}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {len(records)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
