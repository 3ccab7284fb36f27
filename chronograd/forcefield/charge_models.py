"""Partial charges of one molecule as a slot map over flat theta (setup layer).

Order of precedence, as in the OpenFF toolkit and Interchange: LibraryCharges that cover the
whole molecule; otherwise charges given explicitly (``charges=``, like charge_from_molecules);
otherwise the force field's NAGLCharges (a graph network, ``chronograd.ml.nagl``),
ChargeIncrementModel (base charges + increments from theta) or ToolkitAM1BCC. Charges computed
outside theta (NAGL, AM1-BCC, Gasteiger, from a file) are the map's constants.
"""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError
from chronograd.forcefield.charges import assign_charges
from chronograd.forcefield.labeling import charge_increment_matches
from chronograd.system.slot_map import SlotMap


def charge_map(rows, mol, labels, charges) -> SlotMap:
    """Library charges if they cover the molecule; else explicit ``charges`` (overriding
    the force field's model, like OpenFF's charge_from_molecules); else the force field's
    ChargeIncrementModel (base method + increments from theta) or ToolkitAM1BCC."""
    library = _library_charges(rows, mol, labels)
    if library is not None:
        return SlotMap.gather(library)
    n = mol.n_atoms
    empty = np.zeros(0, np.int64)
    handlers = rows.ff.file.handlers
    if charges is not None:
        return SlotMap(n, empty, empty, np.zeros(0), assign_charges(mol, charges))
    if "NAGLCharges" in handlers:
        return SlotMap(n, empty, empty, np.zeros(0), nagl_charges(rows.ff.file, mol))
    if "ChargeIncrementModel" in handlers:
        return _charge_increments(rows, mol)
    if "ToolkitAM1BCC" in handlers:
        return SlotMap(n, empty, empty, np.zeros(0), assign_charges(mol, "am1bcc"))
    raise InputError(f"{mol.name}: no LibraryCharges cover this molecule and the force field"
                     " has no charge model; pass charges='am1bcc', 'gasteiger' or"
                     " 'from-file'")

def nagl_model(ff_file):
    """The NAGL model a force field's NAGLCharges section names, hash-checked."""
    from chronograd.ml.nagl import load_nagl_model

    attrs = ff_file.handlers["NAGLCharges"].attributes
    return load_nagl_model(attrs["model_file"], attrs.get("model_file_hash"),
                           search=ff_file.folders)


def nagl_charges(ff_file, mol) -> np.ndarray:
    return nagl_model(ff_file).charges(mol)


def _charge_increments(rows, mol) -> SlotMap:
    handler = rows.ff.file.handlers["ChargeIncrementModel"]
    method = handler.attributes.get("partial_charge_method", "formal_charge")
    base_methods = {"formal_charge": None, "zeros": None, "am1bcc": "am1bcc",
                    "gasteiger": "gasteiger"}
    if method.lower() not in base_methods:
        raise InputError(f"ChargeIncrementModel partial_charge_method={method!r} is not"
                         f" supported; supported: {sorted(base_methods)}")
    if method.lower() == "formal_charge":
        base = np.array([a.GetFormalCharge() for a in mol.rdmol.GetAtoms()], float)
    elif method.lower() == "zeros":
        base = np.zeros(mol.n_atoms)
    else:
        base = assign_charges(mol, base_methods[method.lower()])
    info = rows.ff.row_info.get("ChargeIncrementModel", {}).get("charge_increment")
    slots, entries, factors = [], [], []
    for match, pidx in charge_increment_matches(rows.ff.file, mol):
        positions = rows.positions_in_leaf[("ChargeIncrementModel", "charge_increment")][pidx]
        given = [rows.offsets[("ChargeIncrementModel", "charge_increment")] + p
                 for p in sorted(positions, key=lambda p: info.term[p])]
        for k, row in enumerate(given):  # n or n - 1 increments (checked when read)
            slots.append(match[k])
            entries.append(row)
            factors.append(1.0)
        if len(given) == len(match) - 1:  # the last atom balances the others
            for row in given:
                slots.append(match[-1])
                entries.append(row)
                factors.append(-1.0)
    return SlotMap(mol.n_atoms, np.array(slots, np.int64), np.array(entries, np.int64),
                   np.array(factors), base)

def _library_charges(rows, mol, labels):
    lib = labels.get("LibraryCharges", {})
    if not lib:
        return None
    found = np.full(mol.n_atoms, -1)
    info = rows.ff.row_info["LibraryCharges"]["charge"]
    for key, pidx in lib.items():
        for pos in rows.positions_in_leaf[("LibraryCharges", "charge")][pidx]:
            found[key[info.term[pos]]] = rows.offsets[("LibraryCharges", "charge")] + pos
    return found if np.all(found >= 0) else None
