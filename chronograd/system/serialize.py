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
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from chronograd.errors import SchemaError
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.system import System
from chronograd.system.terms import HarmonicAngleTerm, HarmonicBondTerm, PeriodicTorsionTerm
from chronograd.system.virtual_sites import KINDS as VIRTUAL_SITE_KINDS
from chronograd.system.virtual_sites import VirtualSites, resolved_weights

SCHEMA = "chronograd.system"
VERSION = 1

_TERM_KINDS = {
    cls.kind: cls
    for cls in (HarmonicBondTerm, HarmonicAngleTerm, PeriodicTorsionTerm, NonbondedTerm)
}
# Static fields of each term kind and how to read them back.
_INT_ARRAYS = {"atoms", "periodicity", "exception_atoms", "lj_class", "lj_class_counts"}
_FIELDS = {
    "harmonic_bond": ("atoms", "periodic"),
    "harmonic_angle": ("atoms", "periodic"),
    "periodic_torsion": ("atoms", "periodicity", "periodic"),
    "nonbonded": (
        "n_atoms",
        "method",
        "exception_atoms",
        "lj_class",
        "lj_class_counts",
        "cutoff",
        "switch_distance",
        "reaction_field_dielectric",
        "ewald_error_tolerance",
        "alpha",
        "grid",
        "use_dispersion_correction",
        "exceptions_use_periodic",
        "explicit_pme_parameters",
        "lj_alpha",
        "lj_grid",
        "explicit_lj_pme_parameters",
        "report_names",
    ),
}


def _floats(values) -> list:
    out = np.asarray(values, dtype=np.float64).tolist()
    return out


def system_to_dict(system: System, params=None) -> dict:
    """A JSON-ready dict of the system (with ``params`` or the system's own). A system made
    from a force field is written with its slot values (the theta map is not serialized)."""
    params = system.slots(params)
    terms = []
    for term in system.terms:
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


def _require(data: dict, key: str, where: str):
    if key not in data:
        raise SchemaError(f"{where}: missing required field {key!r}")
    return data[key]


def system_from_dict(data: dict, *, source: str = "<dict>") -> System:
    """Build a System from a dict made by ``system_to_dict`` (validated, with clear errors)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SchemaError(f"{source}: not a chronograd system (expected \"schema\": \"{SCHEMA}\")")
    version = data.get("version")
    if version != VERSION:
        raise SchemaError(
            f"{source}: schema version {version!r} is not supported (this chronograd reads"
            f" version {VERSION}); re-save the system with a matching chronograd"
        )
    masses = np.asarray(_require(data, "masses", source), dtype=np.float64)
    box = data.get("box")
    box = None if box is None else np.asarray(box, dtype=np.float64)
    cons = data.get("constraints", [])
    constraints = np.asarray([c[:2] for c in cons], dtype=np.int32).reshape(-1, 2)
    distances = np.asarray([c[2] for c in cons], dtype=np.float64)
    terms, params = [], {}
    for k, entry in enumerate(_require(data, "terms", source)):
        where = f"{source}: terms[{k}]"
        kind = _require(entry, "kind", where)
        if kind not in _TERM_KINDS:
            raise SchemaError(f"{where}: unknown term kind {kind!r}; known: {sorted(_TERM_KINDS)}")
        name = _require(entry, "name", where)
        kwargs = {"name": name}
        for f in _FIELDS[kind]:
            v = _require(entry, f, where)
            if f in _INT_ARRAYS:
                v = np.asarray(v, dtype=np.int64 if f == "lj_class_counts" else np.int32)
                if f in ("atoms", "exception_atoms"):
                    width = {"harmonic_bond": 2, "harmonic_angle": 3, "periodic_torsion": 4}
                    v = v.reshape(-1, width.get(kind, 2))
            elif f in ("grid", "lj_grid") and v is not None:
                v = tuple(int(x) for x in v)
            elif f == "report_names" and v is not None:
                v = tuple(str(x) for x in v)
            kwargs[f] = v
        term = _TERM_KINDS[kind](**kwargs)
        raw = _require(entry, "params", where)
        missing = set(term.param_names) - set(raw)
        if missing:
            raise SchemaError(f"{where} ({name}): params missing {sorted(missing)}")
        p = {a: np.asarray(raw[a], dtype=np.float64) for a in term.param_names}
        bad = [a for a, v in p.items() if not np.all(np.isfinite(v))]
        if bad:
            raise SchemaError(f"{where} ({name}): params {bad} contain NaN or infinity")
        terms.append(term)
        params[name] = {a: jnp.asarray(v) for a, v in p.items()}
    sites = []
    for k, entry in enumerate(data.get("virtual_sites", [])):
        where = f"{source}: virtual_sites[{k}]"
        kind = _require(entry, "kind", where)
        if kind not in VIRTUAL_SITE_KINDS:
            raise SchemaError(f"{where}: unknown kind {kind!r}; known: {list(VIRTUAL_SITE_KINDS)}")
        sites.append(VirtualSites(
            kind,
            np.asarray(_require(entry, "sites", where), np.int32),
            np.asarray(_require(entry, "parents", where), np.int32),
            np.asarray(_require(entry, "weights", where), np.float64),
        ))
    return System(
        masses=masses,
        terms=tuple(terms),
        params=params,
        box=box,
        constraints=constraints,
        constraint_distances=distances,
        virtual_sites=tuple(sites),
    )


def save(system: System, path, params=None) -> None:
    """Write the system (and ``params``, default its own) to ``path`` as JSON."""
    text = json.dumps(system_to_dict(system, params), indent=1)
    Path(path).write_text(text + "\n")


def load(path) -> System:
    """Read a system written by ``save``.

    Raises:
        SchemaError: with the file name (and line and column for malformed JSON).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SchemaError(
            f"{path}: line {exc.lineno}, column {exc.colno}: malformed JSON ({exc.msg})"
        ) from None
    except ValueError as exc:
        raise SchemaError(f"{path}: {exc}") from None
    return system_from_dict(data, source=str(path))


def _reject_constant(name):
    raise ValueError(f"non-finite number {name} is not allowed in a system file")


