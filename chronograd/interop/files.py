"""Reading OpenMM System XML and PDB files with errors that name the file and line."""

from __future__ import annotations

import math
import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np

from chronograd.errors import InputError


def atomic_write(path, write, *, suffix: str = ".tmp") -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then move it onto ``path``, so
    that a crash or a refused input never leaves a half-written file. ``suffix`` ends the
    temporary name (np.savez, for one, appends .npz to any other)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_openmm_system_xml(path):
    """Deserialize an ``openmm.XmlSerializer`` System file. The text is parsed with defusedxml
    first (no DTDs, entities or external references reach OpenMM's parser).

    Raises:
        InputError: missing file, malformed XML (with line and column), or not a System.
    """
    import openmm

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text()
        root = SafeET.fromstring(text)
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{path}: line {line}, column {col}: malformed XML ({exc})") from None
    except defusedxml.DefusedXmlException as exc:
        raise InputError(f"{path}: refused XML construct ({exc}); System files need no DTD,"
                         " entities or external references") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable XML file ({exc})") from None
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

    Only the first MODEL is read, one position per ATOM/HETATM record (the first alternate
    location of an atom, as OpenMM keeps it). Coordinates are read here, line by line, so that a
    malformed or non-finite coordinate is reported with its line number and atom index and no
    atom is merged away (OpenMM's reader drops atoms whose names repeat in a residue); the box
    comes from OpenMM's reading of CRYST1 (reduced box vectors).
    """
    import openmm.app as app
    import openmm.unit as u

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; expected a PDB file") from None
    coords = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith("ENDMDL"):
            break
        if not line.startswith(("ATOM  ", "HETATM")) or line[16:17] not in ("", " ", "A"):
            continue
        atom = len(coords)
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
        coords.append(xyz)
    if not coords:
        raise InputError(f"{path}: no ATOM or HETATM records found; is this a PDB file?")
    box = None
    if any(line.startswith("CRYST1") for line in text.splitlines()):
        try:
            with warnings.catch_warnings():  # e.g. "duplicate atom": irrelevant to the box
                warnings.simplefilter("ignore")
                vectors = app.PDBFile(str(path)).topology.getPeriodicBoxVectors()
        except Exception as exc:
            raise InputError(f"{path}: OpenMM's PDB reader failed: {exc}") from None
        box = None if vectors is None else np.asarray(vectors.value_in_unit(u.nanometer))
    return np.asarray(coords) * 0.1, box
