"""JSON serialization of systems: a versioned, human-readable schema with an exact round trip.

Floats are written with Python's shortest repr, which reads back to the identical float64.
Loading only parses JSON and builds arrays: it never executes code or unpickles.

Schema (version 1)::

    {"schema": "chronograd.system", "version": 1,
     "masses": [N floats, amu], "box": [[3 floats] x 3] nm | null,
     "constraints": [[i, j, distance_nm], ...],
     "terms": [{"kind": "harmonic_bond", "name": ..., <static fields>,
                "params": {attribute: [floats]}}, ...]}
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError, SchemaError
from chronograd.interop.files import atomic_write
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.system import System
from chronograd.system.terms import (
    HarmonicAngleTerm,
    HarmonicBondTerm,
    MorseBondTerm,
    PeriodicTorsionTerm,
)
from chronograd.system.virtual_sites import KINDS as VIRTUAL_SITE_KINDS
from chronograd.system.virtual_sites import VirtualSites, resolved_weights

SCHEMA = "chronograd.system"
VERSION = 1

_TERM_KINDS = {
    cls.kind: cls
    for cls in (HarmonicBondTerm, MorseBondTerm, HarmonicAngleTerm, PeriodicTorsionTerm,
                NonbondedTerm)
}
# Static fields of each term kind and their JSON types (see ``_read_field``).
_FIELDS = {
    "harmonic_bond": {"atoms": "indices2", "periodic": "bool"},
    "morse_bond": {"atoms": "indices2", "periodic": "bool"},
    "harmonic_angle": {"atoms": "indices3", "periodic": "bool"},
    "periodic_torsion": {"atoms": "indices4", "periodicity": "ints", "periodic": "bool"},
    "nonbonded": {
        "n_atoms": "int",
        "method": "str",
        "exception_atoms": "indices2",
        "lj_class": "ints",
        "lj_class_counts": "ints",
        "cutoff": "float",
        "switch_distance": "float?",
        "reaction_field_dielectric": "float",
        "ewald_error_tolerance": "float",
        "alpha": "float",
        "grid": "grid?",
        "use_dispersion_correction": "bool",
        "exceptions_use_periodic": "bool",
        "explicit_pme_parameters": "bool",
        "lj_alpha": "float",
        "lj_grid": "grid?",
        "explicit_lj_pme_parameters": "bool",
        "report_names": "names?",
    },
}


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _read_array(value, where: str, kind: str, width: int | None = None) -> np.ndarray:
    """A JSON list as an int ("i") or float ("f") array of shape [n] or [n, width]."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        a = None
    shape = f"[n, {width}]" if width else "[n]"
    what = "integers" if kind == "i" else "numbers"
    if a is None or a.dtype == object or not isinstance(value, list):
        raise SchemaError(f"{where}: expected a list of {what} of shape {shape}")
    if a.size == 0:
        a = np.zeros((0, width) if width else (0,))
    elif a.dtype.kind not in ("iu" if kind == "i" else "iuf"):
        found = {"b": "true/false", "f": "floats", "U": "strings"}.get(a.dtype.kind, "values")
        raise SchemaError(f"{where}: expected {what}, got {found}")
    if a.shape != ((a.shape[0], width) if width else (a.shape[0],)):
        raise SchemaError(f"{where}: expected shape {shape}, got {list(a.shape)}")
    if kind == "i":
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise SchemaError(f"{where}: index out of the 32-bit range")
        return a.astype(np.int32)
    return a.astype(np.float64)


def _read_field(value, kind: str, where: str):
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    if kind.startswith("indices"):
        return _read_array(value, where, "i", int(kind[-1]))
    if kind == "ints":
        return _read_array(value, where, "i")
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and _is_number(value):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "grid" and isinstance(value, list) and len(value) == 3 and all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in value):
        return tuple(value)
    if kind == "names" and isinstance(value, list) and len(value) == 2 and all(
            isinstance(x, str) for x in value):
        return tuple(value)
    expected = {"int": "an integer", "float": "a number", "bool": "true or false",
                "str": "a string", "grid": "three positive integers",
                "names": "two strings"}[kind]
    raise SchemaError(f"{where}: expected {expected}, got {value!r:.60}")


def _floats(values) -> list:
    out = np.asarray(values, dtype=np.float64).tolist()
    return out


def system_to_dict(system: System, params=None) -> dict:
    """A JSON-ready dict of the system (with ``params`` or the system's own). A system made
    from a force field is written with its slot values (the theta map is not serialized)."""
    params = system.slots(params)
    terms = []
    for term in system.terms:
        if term.kind not in _FIELDS:
            raise InputError(
                f"term {term.name!r} ({term.kind}) has no JSON form; a learned potential is"
                " saved as a model directory (chronograd.ml.save_model), a particle"
                " system is rebuilt with cg.particle_system, and custom forces, CMAP and"
                " implicit solvent travel as an OpenMM System XML (to_openmm)")
        entry = {"kind": term.kind, "name": term.name}
        for f in _FIELDS[term.kind]:
            v = getattr(term, f)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, tuple):
                v = list(v)
            entry[f] = v
        entry["params"] = {k: _floats(v) for k, v in params[term.name].items()}
        terms.append(entry)
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "masses": _floats(system.masses),
        "box": None if system.box is None else _floats(system.box),
        "constraints": [
            [int(i), int(j), float(d)]
            for (i, j), d in zip(system.constraints, system.constraint_distances, strict=True)
        ],
        "terms": terms,
        "virtual_sites": [
            {"kind": vs.kind, "sites": vs.sites.tolist(), "parents": vs.parents.tolist(),
             "weights": _floats(resolved_weights(vs, params))}
            for vs in system.virtual_sites
        ],
    }


def _require(data, key: str, where: str):
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected a JSON object, got {data!r:.60}")
    if key not in data:
        raise SchemaError(f"{where}: missing required field {key!r}")
    return data[key]


def system_from_dict(data: dict, *, source: str = "<dict>") -> System:
    """Build a System from a dict made by ``system_to_dict``: every field's type and shape is
    checked, then index ranges and finiteness (``check_system``), with errors that name the
    field (``terms[2] (Bonds) atoms[5]``)."""
    from chronograd.system.validate import check_system

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SchemaError(f"{source}: not a chronograd system (expected \"schema\": \"{SCHEMA}\")")
    version = data.get("version")
    if version != VERSION:
        raise SchemaError(
            f"{source}: schema version {version!r} is not supported (this chronograd reads"
            f" version {VERSION}); re-save the system with a matching chronograd"
        )
    masses = _read_array(_require(data, "masses", source), f"{source}: masses", "f")
    box = data.get("box")
    if box is not None:
        box = _read_array(box, f"{source}: box", "f", 3)
        if box.shape != (3, 3):
            raise SchemaError(f"{source}: box must be 3 rows of 3 numbers (nm) or null")
    cons = data.get("constraints", [])
    if not isinstance(cons, list) or not all(
            isinstance(c, list) and len(c) == 3 and all(_is_number(x) for x in c)
            and all(isinstance(x, int) for x in c[:2]) for c in cons):
        raise SchemaError(f"{source}: constraints must be a list of [i, j, distance_nm]")
    constraints = np.asarray([c[:2] for c in cons], dtype=np.int64).reshape(-1, 2)
    distances = np.asarray([c[2] for c in cons], dtype=np.float64)
    terms, params = [], {}
    entries = _require(data, "terms", source)
    if not isinstance(entries, list):
        raise SchemaError(f"{source}: terms must be a list")
    for k, entry in enumerate(entries):
        where = f"{source}: terms[{k}]"
        kind = _require(entry, "kind", where)
        if not isinstance(kind, str) or kind not in _TERM_KINDS:
            raise SchemaError(f"{where}: unknown term kind {kind!r:.40}; known:"
                              f" {sorted(_TERM_KINDS)}")
        name = _require(entry, "name", where)
        if not isinstance(name, str) or not name:
            raise SchemaError(f"{where}: name must be a non-empty string")
        where = f"{where} ({name})"
        kwargs = {"name": name}
        for f, field_kind in _FIELDS[kind].items():
            kwargs[f] = _read_field(_require(entry, f, where), field_kind, f"{where} {f}")
        try:
            term = _TERM_KINDS[kind](**kwargs)
        except InputError as exc:
            raise SchemaError(f"{where}: {exc}") from None
        raw = _require(entry, "params", where)
        if not isinstance(raw, dict):
            raise SchemaError(f"{where}: params must be an object of attribute -> list")
        missing = set(term.param_names) - set(raw)
        if missing:
            raise SchemaError(f"{where}: params missing {sorted(missing)}")
        p = {a: _read_array(raw[a], f"{where} params.{a}", "f") for a in term.param_names}
        terms.append(term)
        params[name] = {a: jnp.asarray(v) for a, v in p.items()}
    sites = []
    entries = data.get("virtual_sites", [])
    if not isinstance(entries, list):
        raise SchemaError(f"{source}: virtual_sites must be a list")
    for k, entry in enumerate(entries):
        where = f"{source}: virtual_sites[{k}]"
        kind = _require(entry, "kind", where)
        if not isinstance(kind, str) or kind not in VIRTUAL_SITE_KINDS:
            raise SchemaError(f"{where}: unknown kind {kind!r:.40}; known:"
                              f" {list(VIRTUAL_SITE_KINDS)}")
        parents = _require(entry, "parents", where)
        width = len(parents[0]) if isinstance(parents, list) and parents and isinstance(
            parents[0], list) else 1
        weights = _require(entry, "weights", where)
        w_width = len(weights[0]) if isinstance(weights, list) and weights and isinstance(
            weights[0], list) else 1
        sites.append(VirtualSites(
            kind,
            _read_array(_require(entry, "sites", where), f"{where} sites", "i"),
            _read_array(parents, f"{where} parents", "i", width),
            _read_array(weights, f"{where} weights", "f", w_width),
        ))
    system = System(
        masses=masses,
        terms=tuple(terms),
        params=params,
        box=box,
        constraints=constraints.astype(np.int32),
        constraint_distances=distances,
        virtual_sites=tuple(sites),
    )
    check_system(system, source)
    if box is not None:
        from chronograd.space.periodic import check_reduced_box

        check_reduced_box(box, where=f"{source}: box")
    return system


def save(system: System, path, params=None) -> None:
    """Write the system (and ``params``, default its own) to ``path`` as JSON."""
    text = json.dumps(system_to_dict(system, params), indent=1)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n"))


def load(path) -> System:
    """Read a system written by ``save``.

    Raises:
        SchemaError: with the file name (and line and column for malformed JSON).
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(), parse_constant=_reject_constant,
                          parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"{path}: line {exc.lineno}, column {exc.colno}: malformed JSON ({exc.msg})"
        ) from None
    except ValueError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    return system_from_dict(data, source=str(path))


def _reject_constant(name):
    raise ValueError(f"non-finite number {name} is not allowed in a system file")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} overflows (not finite)")
    return value


