"""Atom features of a molecule for graph networks (setup layer: RDKit, NumPy).

Each feature is a small function ``(molecule) -> [N, k]`` named as openff-nagl names it in a
model's configuration (``atomic_element``, ``atom_connectivity``, ``atom_average_formal_charge``,
``atom_in_ring_of_size``), so a NAGL model file's feature list is read and evaluated as written.
One-hot categories that an atom does not fit are an error naming the atom, never a row of
zeros the model was not trained on.
"""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError
from chronograd.ml.resonance import ResonanceTooLarge, average_formal_charges, toolkit_rdmol

_SYMBOLS = ("H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P",
            "S", "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
            "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc",
            "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe")


def element_symbol(z: int) -> str:
    return _SYMBOLS[z - 1] if 1 <= z <= len(_SYMBOLS) else f"Z={z}"


def _one_hot(values, categories, label: str, mol, what: str) -> np.ndarray:
    out = np.zeros((len(values), len(categories)))
    index = {c: k for k, c in enumerate(categories)}
    for atom, value in enumerate(values):
        if value not in index:
            raise InputError(
                f"{mol.name or 'molecule'}: atom index {atom} has {what} {value}, which the"
                f" {label} was not trained on; supported: {', '.join(map(str, categories))}")
        out[atom, index[value]] = 1.0
    return out


def atomic_element(mol, *, categories, label="model") -> np.ndarray:
    symbols = [element_symbol(int(z)) for z in mol.atomic_numbers]
    return _one_hot(symbols, list(categories), label, mol, "element")


def atom_connectivity(mol, *, categories, label="model") -> np.ndarray:
    degree = [a.GetDegree() for a in mol.rdmol.GetAtoms()]
    return _one_hot(degree, list(categories), label, mol, "connectivity")


def atom_average_formal_charge(mol, *, label="model", **_) -> np.ndarray:
    try:
        return average_formal_charges(mol.rdmol)[:, None]
    except ResonanceTooLarge as err:
        raise InputError(f"{mol.name or 'molecule'}: {err} (a large conjugated system); the"
                         f" {label} cannot featurize it: assign charges another way"
                         " (charges='am1bcc')") from None


def atom_in_ring_of_size(mol, *, ring_size: int, **_) -> np.ndarray:
    rd = toolkit_rdmol(mol.rdmol)
    return np.array([[float(a.IsInRingSize(int(ring_size)))] for a in rd.GetAtoms()])


def atom_formal_charge(mol, *, categories, label="model") -> np.ndarray:
    charges = [a.GetFormalCharge() for a in mol.rdmol.GetAtoms()]
    return _one_hot(charges, list(categories), label, mol, "formal charge")


FEATURES = {
    "atomic_element": atomic_element,
    "atom_connectivity": atom_connectivity,
    "atom_average_formal_charge": atom_average_formal_charge,
    "atom_in_ring_of_size": atom_in_ring_of_size,
    "atom_formal_charge": atom_formal_charge,
}


def atom_features(mol, spec: list[dict], *, label: str = "model") -> np.ndarray:
    """[N, F] features of ``mol`` in the order of ``spec`` (a NAGL config's ``atom_features``:
    dicts with ``name`` and options such as ``categories`` or ``ring_size``)."""
    columns = []
    for item in spec:
        name = item["name"]
        if name not in FEATURES:
            raise InputError(f"{label}: atom feature {name!r} is not supported; supported:"
                             f" {', '.join(sorted(FEATURES))}")
        options = {k: v for k, v in item.items() if k != "name"}
        columns.append(FEATURES[name](mol, label=label, **options))
    return np.concatenate(columns, axis=1) if columns else np.zeros((mol.n_atoms, 0))
