"""Reading SMIRNOFF ``.offxml`` files into handlers and parameters (setup layer).

Each handler keeps its attributes and an ordered list of parameters; each parameter keeps its
SMIRKS, id, and attributes parsed to internal units with the unit expression they were written
in. The parsed ElementTree is kept so that ``write_offxml`` changes only the numbers it must.
Bare names such as ``openff-2.2.1.offxml`` resolve from the ``openforcefields`` data package.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from chronograd.errors import InputError
from chronograd.forcefield.quantity import format_quantity, parse_quantity

# Per-parameter attributes that are numbers with units (indexed ones end in a digit).
_QUANTITY = re.compile(r"^(k|length|angle|phase|epsilon|sigma|rmin_half|charge|charge_increment|"
                       r"distance)\d*$")
_INTEGER = re.compile(r"^periodicity\d+$")
_FLOAT = re.compile(r"^idivf\d+$")

SUPPORTED_HANDLERS = {
    "Constraints", "Bonds", "Angles", "ProperTorsions", "ImproperTorsions", "vdW",
    "Electrostatics", "LibraryCharges", "ChargeIncrementModel", "ToolkitAM1BCC",
}
# Elements that carry no force-field content.
_METADATA = {"Author", "Date"}


@dataclass
class Parameter:
    """One SMIRNOFF parameter: its SMIRKS, id, values (internal units) and their units."""

    handler: str
    smirks: str
    id: str
    values: dict[str, float | int] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    element: ET.Element | None = field(default=None, repr=False)


@dataclass
class Handler:
    name: str
    attributes: dict[str, str]
    parameters: list[Parameter]
    element: ET.Element | None = field(default=None, repr=False)


@dataclass
class ForceFieldFile:
    handlers: dict[str, Handler]
    aromaticity_model: str
    source: str
    tree: ET.ElementTree = field(repr=False, default=None)


def resolve_offxml(name_or_path) -> Path:
    """A path, or a bare file name found in the openforcefields data package."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    try:
        import openforcefields

        for folder in openforcefields.get_forcefield_dirs_paths():
            candidate = Path(folder) / str(name_or_path)
            if candidate.is_file():
                return candidate
    except ImportError:  # pragma: no cover - the package is a dependency
        pass
    raise InputError(
        f"{name_or_path}: no such file, and no force field of that name in the openforcefields"
        " package (e.g. 'openff-2.2.1.offxml', 'openff_unconstrained-2.2.1.offxml')"
    )


def _parse_parameter(handler: str, elem: ET.Element, source: str) -> Parameter:
    smirks = elem.get("smirks")
    pid = elem.get("id") or elem.get("name") or smirks
    if smirks is None:
        raise InputError(f"{source}: a <{elem.tag}> in <{handler}> (id {pid!r}) has no smirks")
    p = Parameter(handler, smirks, pid, element=elem)
    for key, raw in elem.attrib.items():
        if key in ("smirks", "id", "name", "parent_id"):
            continue
        if "bondorder" in key:
            raise InputError(
                f"{source}: parameter {pid} ({handler}) uses {key}: fractional bond-order"
                " interpolation is not supported"
            )
        try:
            if _QUANTITY.match(key):
                p.values[key], p.units[key] = parse_quantity(raw)
            elif _INTEGER.match(key):
                p.values[key] = int(raw)
            elif _FLOAT.match(key):
                p.values[key] = float(raw)
        except (InputError, ValueError) as exc:
            raise InputError(
                f"{source}: parameter {pid} ({handler}), attribute {key}={raw!r}: {exc}"
            ) from None
    return p


def read_offxml(name_or_path) -> ForceFieldFile:
    """Parse a SMIRNOFF force field.

    Raises:
        InputError: unknown file, malformed XML (with line and column), unsupported handlers
            or attributes (named), bad quantities (parameter id and attribute).
    """
    path = resolve_offxml(name_or_path)
    source = str(name_or_path)
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{path}: line {line}, column {col}: malformed XML ({exc})") from None
    root = tree.getroot()
    if root.tag != "SMIRNOFF":
        raise InputError(f"{path}: root element is <{root.tag}>, expected <SMIRNOFF>")
    handlers = {}
    for elem in root:
        if elem.tag in _METADATA:
            continue
        if elem.tag not in SUPPORTED_HANDLERS:
            hint = (
                " (openff-2.3.0 assigns charges with a graph neural network; that is not"
                " implemented yet: use openff-2.2.1.offxml)"
                if elem.tag == "NAGLCharges"
                else ""
            )
            raise InputError(f"{source}: the <{elem.tag}> handler is not supported{hint}")
        params = [_parse_parameter(elem.tag, child, source) for child in elem]
        handlers[elem.tag] = Handler(elem.tag, dict(elem.attrib), params, element=elem)
    return ForceFieldFile(handlers, root.get("aromaticity_model", "OEAroModel_MDL"), source, tree)


def write_offxml(ff: ForceFieldFile, path, values: dict[tuple[str, str, str], float]) -> None:
    """Write ``ff`` with new values, keyed by (handler, parameter id, attribute) in internal
    units, each written in the unit expression the file used. Everything else is unchanged."""
    tree = copy.deepcopy(ff.tree)
    by_key = {}
    for handler in tree.getroot():
        for elem in handler:
            pid = elem.get("id") or elem.get("name") or elem.get("smirks")
            by_key[(handler.tag, pid)] = elem
    units = {(h.name, p.id, a): u for h in ff.handlers.values() for p in h.parameters
             for a, u in p.units.items()}
    for (handler, pid, attr), value in values.items():
        elem = by_key.get((handler, pid))
        if elem is None or attr not in elem.attrib:
            raise InputError(f"no attribute {attr} on parameter {pid} in {handler}")
        elem.set(attr, format_quantity(value, units.get((handler, pid, attr), "")))
    tmp = Path(str(path) + ".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)  # nothing half-written
