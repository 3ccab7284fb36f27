"""Molecule sets and OpenFF-toolkit/Interchange references for the SMIRNOFF tests."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import numpy as np

from chronograd.topology import Molecule

DATA = Path(__file__).parent / "data"


@functools.cache
def curated_smiles() -> list[tuple[str, str]]:
    out = []
    for line in (DATA / "diverse_molecules.smi").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            smi, name = line.split()
            out.append((smi, name))
    return out


@functools.cache
def minidrugbank():
    """The MiniDrugBank set shipped with the OpenFF toolkit (test reference), as OpenFF
    molecules; records RDKit cannot read are skipped by the toolkit's reader."""
    from openff.toolkit import Molecule as OFFMolecule

    path = importlib.resources.files("openff.toolkit") / "data/molecules/MiniDrugBank.sdf"
    return OFFMolecule.from_file(str(path), allow_undefined_stereo=True)


def diverse_molecules() -> list[tuple[str, object]]:
    """(name, OpenFF molecule) for the curated SMILES and MiniDrugBank."""
    from openff.toolkit import Molecule as OFFMolecule

    out = [(name, OFFMolecule.from_smiles(smi, allow_undefined_stereo=True))
           for smi, name in curated_smiles()]
    out += [(m.name or f"drugbank{k}", m) for k, m in enumerate(minidrugbank())]
    return out


def to_chronograd(off_molecule, name="", conformer=False) -> Molecule:
    """Same atom order; with ``conformer``, positions from the OpenFF molecule or generated."""
    mol = Molecule.from_rdkit(off_molecule.to_rdkit(), name=name)
    if conformer and mol.positions is None:
        from rdkit.Chem import AllChem

        params = AllChem.ETKDGv3()
        params.randomSeed = 0xF00D
        rd = mol.rdmol
        AllChem.EmbedMolecule(rd, params)
        mol.positions = rd.GetConformer().GetPositions() * 0.1
    return mol


def interchange_system(offxml: str, off_molecule, charges: np.ndarray, box=None):
    """OpenFF Interchange's OpenMM System for one molecule with the given charges."""
    from openff.interchange import Interchange
    from openff.units import unit

    m = type(off_molecule)(off_molecule)
    m.partial_charges = np.asarray(charges) * unit.elementary_charge
    ic = Interchange.from_smirnoff(_offff(offxml), [m], charge_from_molecules=[m])
    return ic.to_openmm_system()


@functools.cache
def _offff(offxml: str):
    from openff.toolkit import ForceField as OFFForceField

    return OFFForceField(offxml)


def vacuum_cases(full: bool):
    """The openff-2.2.1 vacuum set: curated molecules and 40 MiniDrugBank ones (``full``), or
    every fifth curated molecule and 10 drug-like ones (each kind of chemistry, fast)."""
    pick = slice(None) if full else slice(None, None, 5)  # molecules built only when used
    curated = [(name, Molecule.from_smiles(smi, name=name))
               for smi, name in [c for c in curated_smiles() if c[1] != "cubane"][pick]]
    drugs = [(m.name, to_chronograd(m, m.name, conformer=True))
             for m in minidrugbank()[:40 if full else 10]]
    return curated + drugs


def mol_to_off(mol):
    from openff.toolkit import Molecule as OFFMolecule

    return OFFMolecule.from_rdkit(mol.rdmol, allow_undefined_stereo=True)
