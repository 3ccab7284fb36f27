"""Reading OpenMM System XML and PDB files with errors that name the file and line."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from chronograd.errors import InputError


def read_openmm_system_xml(path):
    """Deserialize an ``openmm.XmlSerializer`` System file.

    Raises:
        InputError: missing file, malformed XML (with line and column), or not a System.
    """
    import openmm

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    text = path.read_text()
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{path}: line {line}, column {col}: malformed XML ({exc})") from None
    if root.tag != "System":
        raise InputError(
            f"{path}: the root element is <{root.tag}>, expected <System>; write the file with"
            " openmm.XmlSerializer.serialize(system)"
        )
    try:
        return openmm.XmlSerializer.deserialize(text)
    except Exception as exc:  # OpenMM raises a bare Exception with its own message
        raise InputError(f"{path}: OpenMM could not read this System: {exc}") from None


def read_pdb_positions(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions [N, 3] and box [3, 3] (or None without CRYST1) in nm from a PDB file.

    Only the first MODEL is read. Coordinates are checked line by line so that a malformed or
    non-finite coordinate is reported with its line number and atom index.
    """
    import openmm.app as app
    import openmm.unit as u

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    atom = 0
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")):
            continue
        try:
            xyz = [float(line[30:38]), float(line[38:46]), float(line[46:54])]
        except ValueError:
            raise InputError(
                f"{path}: line {lineno}: cannot read x, y, z (columns 31-54) of atom index"
                f" {atom}: {line[30:54]!r}"
            ) from None
        if not all(math.isfinite(v) for v in xyz):
            raise InputError(
                f"{path}: line {lineno}: coordinates of atom index {atom} are not finite: {xyz}"
            )
        atom += 1
    if atom == 0:
        raise InputError(f"{path}: no ATOM or HETATM records found; is this a PDB file?")
    try:
        pdb = app.PDBFile(str(path))
    except Exception as exc:
        raise InputError(f"{path}: OpenMM's PDB reader failed: {exc}") from None
    positions = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(u.nanometer))
    vectors = pdb.topology.getPeriodicBoxVectors()
    box = None if vectors is None else np.asarray(vectors.value_in_unit(u.nanometer))
    return positions, box
