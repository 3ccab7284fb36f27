"""Reading SMIRNOFF ``.offxml`` files into handlers and parameters (setup layer).

Each handler keeps its attributes and an ordered list of parameters; each parameter keeps its
SMIRKS, id, and attributes parsed to internal units with the unit expression they were written
in. The parsed ElementTree is kept so that ``write_offxml`` changes only the numbers it must.
Bare names such as ``openff-2.2.1.offxml`` resolve from the ``openforcefields`` data package.
Files are parsed with defusedxml (no entities, no DTDs, no external references) and checked
once, here: element and attribute names, units' dimensions, finiteness, required attributes,
tagged atoms per SMIRKS and unique ids (``offxml_checks``).
"""

from __future__ import annotations

import copy
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET

from chronograd.errors import InputError
from chronograd.forcefield import offxml_checks as checks
from chronograd.forcefield.quantity import expected_dimension, format_quantity, parse_quantity
from chronograd.interop.files import atomic_write

# Per-parameter attributes that are numbers with units (indexed ones end in a digit).
_QUANTITY = re.compile(r"^(k|length|angle|phase|epsilon|sigma|rmin_half|charge|charge_increment|"
                       r"distance|outOfPlaneAngle|inPlaneAngle)\d*$")
_INTEGER = re.compile(r"^periodicity\d+$")
_FLOAT = re.compile(r"^idivf\d+$")

SUPPORTED_HANDLERS = {
    "Constraints", "Bonds", "Angles", "ProperTorsions", "ImproperTorsions", "vdW",
    "Electrostatics", "LibraryCharges", "ChargeIncrementModel", "ToolkitAM1BCC", "VirtualSites",
    "NAGLCharges",
}
# String-valued parameter attributes kept verbatim (VirtualSites).
_STRING = {"type", "match", "name"}
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
    strings: dict[str, str] = field(default_factory=dict)
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
    folders: tuple = ()  # where the files are (a NAGL model file may sit beside them)


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


def element_id(handler: str, elem: ET.Element) -> str:
    """A parameter's id: its ``id`` attribute; for virtual sites without one, OpenFF
    Interchange's key "SMIRKS NAME MATCH"; else its name or SMIRKS."""
    if elem.get("id"):
        return elem.get("id")
    if handler == "VirtualSites":
        return " ".join(str(elem.get(k)) for k in ("smirks", "name", "match"))
    return elem.get("name") or elem.get("smirks")


def _parse_parameter(handler: str, elem: ET.Element, source: str) -> Parameter:
    smirks = elem.get("smirks")
    pid = element_id(handler, elem)
    checks.check_parameter_element(source, handler, elem, str(pid))
    if smirks is None:
        raise InputError(f"{source}: a <{elem.tag}> in <{handler}> (id {pid!r}) has no smirks")
    p = Parameter(handler, smirks, pid, element=elem)
    for key, raw in elem.attrib.items():
        if key in ("smirks", "id", "parent_id"):
            continue
        if key in _STRING:
            p.strings[key] = raw
            continue
        if raw == "None":  # e.g. a DivalentLonePair's inPlaneAngle
            continue
        try:
            if _QUANTITY.match(key):
                p.values[key], p.units[key] = parse_quantity(
                    raw, expected_dimension(handler, key))
            elif _INTEGER.match(key):
                p.values[key] = int(raw)
            elif _FLOAT.match(key):
                p.values[key] = float(raw)
                if not math.isfinite(p.values[key]):
                    raise InputError("not a finite number")
        except (InputError, ValueError) as exc:
            raise InputError(
                f"{source}: parameter {pid} ({handler}), attribute {key}={raw!r}: {exc}"
            ) from None
    checks.check_parameter_values(source, handler, p)
    checks.check_smirks(source, handler, p)
    return p


def _parse_tree(name_or_path) -> ET.ElementTree:
    path = resolve_offxml(name_or_path)
    try:
        tree = SafeET.parse(path)
    except ET.ParseError as exc:
        line, col = exc.position
        raise InputError(f"{path}: line {line}, column {col}: malformed XML ({exc})") from None
    except defusedxml.DefusedXmlException as exc:
        raise InputError(f"{path}: refused XML construct ({exc}); SMIRNOFF files need no DTD,"
                         " entities or external references") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable XML file ({exc})") from None
    if tree.getroot().tag != "SMIRNOFF":
        raise InputError(f"{path}: root element is <{tree.getroot().tag}>, expected <SMIRNOFF>")
    return tree


def _same_setting(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return parse_quantity(a)[0] == parse_quantity(b)[0]
    except (InputError, ValueError):
        try:
            return float(a) == float(b)
        except ValueError:
            return False


def _merge(tree: ET.ElementTree, other: ET.ElementTree, name: str) -> None:
    """Append ``other``'s parameters to ``tree``'s handlers (later files win, as in the OpenFF
    toolkit); handler settings must agree."""
    root = tree.getroot()
    model = other.getroot().get("aromaticity_model", "OEAroModel_MDL")
    if model != root.get("aromaticity_model", "OEAroModel_MDL"):
        raise InputError(f"{name}: aromaticity_model={model!r} differs from the force field it"
                         " is combined with")
    for elem in other.getroot():
        if elem.tag in _METADATA:
            continue
        mine = root.find(elem.tag)
        if mine is None:
            root.append(copy.deepcopy(elem))
            continue
        for key in set(mine.attrib) | set(elem.attrib):
            if key == "version":
                continue
            a, b = mine.get(key), elem.get(key)
            if a is None or b is None or not _same_setting(a, b):
                raise InputError(f"{name}: <{elem.tag}> {key}={b!r} is incompatible with"
                                 f" {a!r} in the force field it is combined with")
        ids = {element_id(mine.tag, c): c for c in mine}
        for child in elem:
            same = ids.get(element_id(elem.tag, child))
            if same is not None:
                if same.get("smirks") != child.get("smirks"):
                    raise InputError(
                        f"{name}: parameter id {element_id(elem.tag, child)!r} in <{elem.tag}>"
                        f" has SMIRKS {child.get('smirks')!r}, but the force field it is"
                        f" combined with uses that id for {same.get('smirks')!r}; rename one")
                mine.remove(same)  # the later copy wins every match the earlier one had
            mine.append(copy.deepcopy(child))


def read_offxml(*names_or_paths) -> ForceFieldFile:
    """Parse a SMIRNOFF force field, or several combined as the OpenFF toolkit does
    (``read_offxml("openff-2.2.1.offxml", "tip4p_ew.offxml")``: parameters of later files are
    appended to the same handlers and so take precedence).

    Raises:
        InputError: unknown file, malformed XML (with line and column), unsupported handlers
            or attributes (named), bad quantities (parameter id and attribute), incompatible
            handler settings between combined files.
    """
    if not names_or_paths:
        raise InputError("no force field file given")
    tree = _parse_tree(names_or_paths[0])
    for name in names_or_paths[1:]:
        _merge(tree, _parse_tree(name), str(name))
    source = " + ".join(str(n) for n in names_or_paths)
    root = tree.getroot()
    handlers = {}
    for elem in root:
        if elem.tag in _METADATA:
            continue
        if elem.tag not in SUPPORTED_HANDLERS:
            raise InputError(f"{source}: the <{elem.tag}> handler is not supported")
        if elem.tag in handlers:
            raise InputError(f"{source}: the <{elem.tag}> handler appears twice; merge its"
                             " parameters into one section")
        checks.check_handler_settings(source, elem.tag, dict(elem.attrib))
        params = [_parse_parameter(elem.tag, child, source) for child in elem]
        checks.check_unique_ids(source, elem.tag, params)
        handlers[elem.tag] = Handler(elem.tag, dict(elem.attrib), params, element=elem)
    folders = tuple(dict.fromkeys(resolve_offxml(n).parent for n in names_or_paths))
    return ForceFieldFile(handlers, root.get("aromaticity_model", "OEAroModel_MDL"), source, tree,
                          folders)


def write_offxml(ff: ForceFieldFile, path, values: dict[tuple[str, str, str], float]) -> None:
    """Write ``ff`` with new values, keyed by (handler, parameter id, attribute) in internal
    units, each written in the unit expression the file used. Everything else is unchanged."""
    tree = copy.deepcopy(ff.tree)
    by_key = {}
    for handler in tree.getroot():
        for elem in handler:
            pid = element_id(handler.tag, elem)
            by_key[(handler.tag, pid)] = elem
    units = {(h.name, p.id, a): u for h in ff.handlers.values() for p in h.parameters
             for a, u in p.units.items()}
    for (handler, pid, attr), value in values.items():
        elem = by_key.get((handler, pid))
        if elem is None or attr not in elem.attrib:
            raise InputError(f"no attribute {attr} on parameter {pid} in {handler}")
        elem.set(attr, format_quantity(value, units.get((handler, pid, attr), "")))
    atomic_write(path, lambda tmp: tree.write(tmp, encoding="utf-8", xml_declaration=True))
