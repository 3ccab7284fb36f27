"""What a SMIRNOFF file must say, checked once when it is read (setup layer).

Each check raises InputError naming the file, the handler, the parameter id and the attribute,
and says how to fix it: element names, known and required attributes per handler, the number
of tagged atoms in each SMIRKS (RDKit must parse it), indexed attributes that come in complete
sets (``k2`` needs ``periodicity2`` and ``phase2``), handler settings that change the energy
(potential forms, combining rules, 1-2/1-3/1-5 scaling) and duplicate parameter ids. Unknown
attributes are refused as the OpenFF toolkit refuses them (no "cosmetic" attributes), so a typo
such as ``lenght`` cannot silently drop a value.
"""

from __future__ import annotations

import math
import re

from chronograd.errors import InputError

_COMMON = {"smirks", "id", "parent_id"}
_INDEXED_KEY = re.compile(r"([A-Za-z_]+?)(\d+)")
# handler -> (parameter element, attributes without their index, indexed attributes)
PARAMETERS = {
    "Constraints": ("Constraint", {"distance"}, set()),
    "Bonds": ("Bond", {"length", "k"}, set()),
    "Angles": ("Angle", {"angle", "k"}, set()),
    "ProperTorsions": ("Proper", set(), {"k", "periodicity", "phase", "idivf"}),
    "ImproperTorsions": ("Improper", set(), {"k", "periodicity", "phase", "idivf"}),
    "vdW": ("Atom", {"epsilon", "sigma", "rmin_half"}, set()),
    "LibraryCharges": ("LibraryCharge", {"name"}, {"charge"}),
    "ChargeIncrementModel": ("ChargeIncrement", set(), {"charge_increment"}),
    "VirtualSites": ("VirtualSite", {"type", "name", "match", "distance", "inPlaneAngle",
                                     "outOfPlaneAngle", "epsilon", "sigma", "rmin_half"},
                     {"charge_increment"}),
    "Electrostatics": (None, set(), set()),
    "ToolkitAM1BCC": (None, set(), set()),
    "NAGLCharges": (None, set(), set()),
}
_REQUIRED = {"Bonds": ("length", "k"), "Angles": ("angle", "k"),
             "VirtualSites": ("type", "distance", "epsilon", "match")}
# Tagged atoms per SMIRKS (LibraryCharges: one per charge; VirtualSites: by type).
TAGGED = {"Constraints": 2, "Bonds": 2, "Angles": 3, "ProperTorsions": 4, "ImproperTorsions": 4,
          "vdW": 1}
VIRTUAL_SITE_ATOMS = {"BondCharge": 2, "MonovalentLonePair": 3, "DivalentLonePair": 3,
                      "TrivalentLonePair": 4}
# Handler settings that change the energy, with the values chronograd evaluates.
SETTINGS = {
    ("Bonds", "potential"): ("harmonic", "(k/2)*(r-length)^2"),
    ("Angles", "potential"): ("harmonic", "(k/2)*(theta-angle)^2"),
    ("ProperTorsions", "potential"): ("k*(1+cos(periodicity*theta-phase))",),
    ("ImproperTorsions", "potential"): ("k*(1+cos(periodicity*theta-phase))",),
    ("vdW", "potential"): ("Lennard-Jones-12-6",),
    ("vdW", "combining_rules"): ("Lorentz-Berthelot",),
    # the NAGLCharges section as openff-2.3.0 writes it (model_file, model_file_hash)
    ("NAGLCharges", "version"): ("0.3",),
}


def _where(source: str, handler: str, pid: str) -> str:
    return f"{source}: parameter {pid} ({handler})"


def check_parameter_element(source: str, handler: str, elem, pid: str) -> None:
    """Element name and attribute names of one parameter."""
    tag, plain, indexed = PARAMETERS[handler]
    if tag is None:
        raise InputError(f"{source}: <{handler}> takes no parameters, found <{elem.tag}>")
    if elem.tag != tag:
        raise InputError(f"{source}: <{handler}> holds <{tag}> parameters, found <{elem.tag}>"
                         f" (id {pid!r})")
    for key in elem.attrib:
        if "bondorder" in key:
            raise InputError(f"{_where(source, handler, pid)} uses {key}: fractional bond-order"
                             " interpolation is not supported")
        m = _INDEXED_KEY.fullmatch(key)
        if key in _COMMON or key in plain or (m and m.group(1) in indexed
                                              and int(m.group(2)) >= 1):
            continue
        known = sorted(_COMMON | plain | {f"{a}1, {a}2, ..." for a in indexed})
        raise InputError(f"{_where(source, handler, pid)}: unknown attribute {key!r}; <{tag}>"
                         f" takes {', '.join(known)}")


def check_parameter_values(source: str, handler: str, p) -> None:
    """Required attributes present and indexed attributes complete (after parsing)."""
    where = _where(source, handler, p.id)
    for key in _REQUIRED.get(handler, ()):
        if key not in p.values and key not in p.strings:
            raise InputError(f"{where}: missing required attribute {key!r}")
    if handler in ("vdW", "VirtualSites"):
        n = ("sigma" in p.values) + ("rmin_half" in p.values)
        if n != 1:
            raise InputError(f"{where}: give exactly one of sigma and rmin_half (found {n})")
        if handler == "vdW" and "epsilon" not in p.values:
            raise InputError(f"{where}: missing required attribute 'epsilon'")
    if handler in ("ProperTorsions", "ImproperTorsions"):
        terms = _indices(p.values, "k")
        if not terms:
            raise InputError(f"{where}: no k1 (a torsion needs k1, periodicity1, phase1)")
        for attr in ("periodicity", "phase"):
            if _indices(p.values, attr) != terms:
                raise InputError(f"{where}: every k<n> needs {attr}<n> (k indices {terms},"
                                 f" {attr} indices {_indices(p.values, attr)})")
        for n in terms:
            if p.values[f"periodicity{n}"] < 1:
                raise InputError(f"{where}: periodicity{n} must be a positive integer")
            if f"idivf{n}" in p.values and p.values[f"idivf{n}"] == 0:
                raise InputError(f"{where}: idivf{n} must not be zero")
        extra = [n for n in _indices(p.values, "idivf") if n not in terms]
        if extra:
            raise InputError(f"{where}: idivf{extra[0]} has no k{extra[0]}")
    if handler == "LibraryCharges" and not _indices(p.values, "charge"):
        raise InputError(f"{where}: a library charge needs charge1, charge2, ...")
    if handler == "ChargeIncrementModel" and not _indices(p.values, "charge_increment"):
        raise InputError(f"{where}: a charge increment needs charge_increment1, ...")
    if handler == "VirtualSites":
        kind = p.strings.get("type")
        if kind not in VIRTUAL_SITE_ATOMS:
            raise InputError(f"{where}: type={kind!r} is not supported"
                             f" ({', '.join(VIRTUAL_SITE_ATOMS)})")
        needs = {"MonovalentLonePair": ("inPlaneAngle", "outOfPlaneAngle"),
                 "DivalentLonePair": ("outOfPlaneAngle",)}.get(kind, ())
        for attr in needs:
            if attr not in p.values:
                raise InputError(f"{where}: a {kind} needs {attr}")
        if p.strings.get("match") not in ("once", "all_permutations"):
            raise InputError(f"{where}: match={p.strings.get('match')!r} is not supported"
                             " (once, all_permutations)")
    for name in ("charge", "charge_increment"):
        got = _indices(p.values, name)
        if got and got != list(range(1, len(got) + 1)):
            raise InputError(f"{where}: {name} indices must run 1, 2, ... without gaps"
                             f" (found {got})")


def _indices(values: dict, attr: str) -> list[int]:
    """The n of every ``<attr><n>`` key of ``values``, sorted."""
    out = []
    for key in values:
        if key.startswith(attr) and key[len(attr):].isdigit():
            out.append(int(key[len(attr):]))
    return sorted(out)


def check_smirks(source: str, handler: str, p) -> None:
    """RDKit parses the SMIRKS; its tags are 1..n with n right for the handler."""
    from chronograd.forcefield.labeling import parse_smirks

    where = _where(source, handler, p.id)
    try:
        query = parse_smirks(p.smirks)[0]
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    tags = sorted(a.GetAtomMapNum() for a in query.GetAtoms() if a.GetAtomMapNum())
    if tags != list(range(1, len(tags) + 1)):
        raise InputError(f"{where}: SMIRKS {p.smirks!r} has tags {tags}; tags must be :1, :2,"
                         " ... each once")
    if handler in TAGGED:
        want = TAGGED[handler]
        what = f"{want} tagged atoms"
    elif handler == "LibraryCharges":
        want = len(_indices(p.values, "charge"))
        what = f"one tagged atom per charge ({want})"
    elif handler == "ChargeIncrementModel":
        n = len(_indices(p.values, "charge_increment"))
        if len(tags) in (n, n + 1):
            return
        want, what = n, f"{n} or {n + 1} tagged atoms for {n} charge increments"
    elif handler == "VirtualSites":
        want = VIRTUAL_SITE_ATOMS[p.strings["type"]]
        what = f"{want} tagged atoms for a {p.strings['type']}"
        n = len(_indices(p.values, "charge_increment"))
        if n != want:
            raise InputError(f"{where}: a {p.strings['type']} needs {want} charge increments,"
                             f" found {n}")
    else:  # pragma: no cover - handlers without parameters never get here
        return
    if len(tags) != want:
        raise InputError(f"{where}: SMIRKS {p.smirks!r} has {len(tags)} tagged atoms; <{handler}>"
                         f" needs {what}")


def check_unique_ids(source: str, handler: str, parameters) -> None:
    seen: dict[str, int] = {}
    for k, p in enumerate(parameters):
        if p.id in seen:
            raise InputError(f"{source}: parameter id {p.id!r} is used twice in <{handler}>"
                             f" (parameters {seen[p.id] + 1} and {k + 1}); ids select parameters"
                             " and label gradients, so give each a unique id")
        seen[p.id] = k


def check_handler_settings(source: str, handler: str, attributes: dict) -> None:
    """Settings that change the energy have values chronograd evaluates; quantities have the
    right dimension; scale factors are numbers."""
    from chronograd.forcefield.quantity import expected_dimension, parse_quantity

    if handler == "NAGLCharges" and not attributes.get("model_file", "").strip():
        raise InputError(f"{source}: <NAGLCharges> needs a model_file attribute naming the"
                         " NAGL model, e.g. model_file=\"openff-gnn-am1bcc-1.0.0.pt\"")
    for key, value in attributes.items():
        allowed = SETTINGS.get((handler, key))
        if allowed is not None and value not in allowed:
            raise InputError(f"{source}: <{handler}> {key}={value!r} is not supported"
                             f" (supported: {', '.join(allowed)})")
        dims = expected_dimension(handler, key)
        if dims is not None:
            try:
                parse_quantity(value, dims)
            except InputError as exc:
                raise InputError(f"{source}: <{handler}> {key}={value!r}: {exc}") from None
        if key.startswith("scale"):
            try:
                ok = math.isfinite(float(value))
            except ValueError:
                ok = False
            if not ok:
                raise InputError(f"{source}: <{handler}> {key}={value!r} is not a finite number")
