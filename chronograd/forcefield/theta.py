"""theta: a force field's numeric parameters as a pytree, with stable ids beside it.

``theta[handler][attribute]`` is a 1-D array in internal units with one row per parameter, or
per (parameter, term) for multi-term attributes: ProperTorsions/ImproperTorsions ``k`` and
``phase`` have a row for each ``k1, k2, ...``; LibraryCharges ``charge`` for each ``charge1,
...``; ChargeIncrementModel ``charge_increment`` likewise. ``RowInfo`` records for each row the
parameter id, its SMIRKS, its index in the handler and the attribute name in the file.
Periodicities and idivf are structure, not parameters: they live in ``RowInfo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from chronograd.forcefield.offxml import ForceFieldFile

# handler -> attributes that become theta (base names; indexed ones end in 1, 2, ...)
THETA_ATTRIBUTES = {
    "Bonds": ("length", "k"),
    "Angles": ("angle", "k"),
    "ProperTorsions": ("k", "phase"),
    "ImproperTorsions": ("k", "phase"),
    "vdW": ("epsilon", "sigma", "rmin_half"),
    "LibraryCharges": ("charge",),
    "ChargeIncrementModel": ("charge_increment",),
    "Constraints": ("distance",),
    "VirtualSites": ("distance", "inPlaneAngle", "outOfPlaneAngle", "charge_increment", "epsilon",
                     "sigma", "rmin_half"),
}
INDEXED = {"ProperTorsions", "ImproperTorsions", "LibraryCharges", "ChargeIncrementModel"}


def _indexed(handler: str, attr: str) -> bool:
    return handler in INDEXED or (handler, attr) == ("VirtualSites", "charge_increment")


@dataclass
class RowInfo:
    """Metadata of the rows of one theta leaf."""

    ids: list[str] = field(default_factory=list)
    smirks: list[str] = field(default_factory=list)
    parameter_index: list[int] = field(default_factory=list)
    file_attribute: list[str] = field(default_factory=list)
    term: list[int] = field(default_factory=list)  # 0-based term index for indexed attributes
    periodicity: list[int] = field(default_factory=list)  # torsions only
    idivf: list[float | None] = field(default_factory=list)  # torsions only (None: default)


def build_theta(ff: ForceFieldFile) -> tuple[dict, dict]:
    """(theta pytree of jnp arrays, row info {handler: {attribute: RowInfo}})."""
    theta, info = {}, {}
    for handler_name, attributes in THETA_ATTRIBUTES.items():
        handler = ff.handlers.get(handler_name)
        if handler is None:
            continue
        leaves, rows = {}, {}
        for attr in attributes:
            values, ri = [], RowInfo()
            for index, p in enumerate(handler.parameters):
                if _indexed(handler_name, attr):
                    terms = sorted(int(m.group(1)) for key in p.values
                                   if (m := re.fullmatch(rf"{attr}(\d+)", key)))
                    for n in terms:
                        values.append(p.values[f"{attr}{n}"])
                        ri.ids.append(p.id)
                        ri.smirks.append(p.smirks)
                        ri.parameter_index.append(index)
                        ri.file_attribute.append(f"{attr}{n}")
                        ri.term.append(n - 1)
                        if handler_name in ("ProperTorsions", "ImproperTorsions"):
                            ri.periodicity.append(int(p.values[f"periodicity{n}"]))
                            ri.idivf.append(p.values.get(f"idivf{n}"))
                elif attr in p.values:
                    values.append(p.values[attr])
                    ri.ids.append(p.id)
                    ri.smirks.append(p.smirks)
                    ri.parameter_index.append(index)
                    ri.file_attribute.append(attr)
                    ri.term.append(0)
            if values:
                leaves[attr] = jnp.asarray(np.asarray(values, dtype=np.float64))
                rows[attr] = ri
        if leaves:
            theta[handler_name] = leaves
            info[handler_name] = rows
    return theta, info
