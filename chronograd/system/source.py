"""ForceFieldSource: the ParameterSource of a system made from a force field.

Called inside the traced energy function, it maps theta (the force field's pytree) to the
system's slots through sparse slot maps, and builds exception parameters (scaled 1-4 pairs,
exclusions) from the per-atom slots, so gradients reach every force-field parameter. Slots not
mapped from theta may be frozen arrays (e.g. imported from OpenMM): they carry no gradient.
Sources and rules are pytrees (arrays are data), so they are inputs of compiled functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from chronograd.potentials.pair import safe_sqrt


@dataclass(frozen=True, eq=False)
class ExceptionRule:
    """Exceptions built from per-atom slots: charge product and epsilon scaled per pair."""

    term: str
    atoms: np.ndarray  # [E, 2]
    scale_coulomb: np.ndarray  # [E]
    scale_lj: np.ndarray  # [E]

    def apply(self, out):
        p = out[self.term]
        last = p["charge"].shape[0] - 1  # padded rows (index N) read the last atom; unused
        i, j = jnp.minimum(self.atoms[:, 0], last), jnp.minimum(self.atoms[:, 1], last)
        p["exception_charge_prod"] = jnp.asarray(self.scale_coulomb) * p["charge"][i] * p[
            "charge"][j]
        p["exception_sigma"] = 0.5 * (p["sigma"][i] + p["sigma"][j])
        p["exception_epsilon"] = jnp.asarray(self.scale_lj) * safe_sqrt(
            p["epsilon"][i] * p["epsilon"][j])


@dataclass(frozen=True, eq=False)
class VirtualSiteRule:
    """Local coordinates [S, 3] nm of SMIRNOFF virtual sites of one ``type`` from their
    ``distance``, ``in_plane_angle`` and ``out_of_plane_angle`` slots (radians), with OpenFF
    Interchange's frame conventions: BondCharge and TrivalentLonePair (-d, 0, 0);
    MonovalentLonePair d (cos t cos p, sin t cos p, sin p); DivalentLonePair (-d cos p, 0,
    d sin p)."""

    group: str
    type: str

    def apply(self, out):
        p = out[self.group]
        d = p["distance"]
        zero = jnp.zeros_like(d)
        if self.type in ("BondCharge", "TrivalentLonePair"):
            local = (-d, zero, zero)
        elif self.type == "MonovalentLonePair":
            t, o = p["in_plane_angle"], p["out_of_plane_angle"]
            local = (d * jnp.cos(t) * jnp.cos(o), d * jnp.sin(t) * jnp.cos(o), d * jnp.sin(o))
        else:  # DivalentLonePair
            o = p["out_of_plane_angle"]
            local = (-d * jnp.cos(o), zero, d * jnp.sin(o))
        p["local_position"] = jnp.stack(local, axis=-1)


@dataclass(frozen=True, eq=False)
class ForceFieldSource:
    """theta -> {term: {attribute: array}} via slot maps; ``frozen`` slots are constants.

    Attributes:
        maps: {term: {attribute: SlotMap}}.
        frozen: {term: {attribute: array}} slots that do not depend on theta.
        rules: derived slots (ExceptionRule: exception parameters from per-atom slots;
            VirtualSiteRule: virtual-site local coordinates from distances and angles).
        provenance: {term: {attribute: "theta" | "frozen"}}, for reports.
    """

    maps: dict
    frozen: dict = field(default_factory=dict)
    rules: tuple = ()

    def __call__(self, theta):
        return self.finalize(self.raw_slots(theta))

    def raw_slots(self, theta):
        """Slots from the maps and frozen values, before exceptions are derived."""
        flat = ravel_pytree(theta)[0]
        out = {}
        for term, attrs in self.maps.items():
            out[term] = {a: m.apply(flat) for a, m in attrs.items()}
        for term, attrs in self.frozen.items():
            out.setdefault(term, {}).update({a: jnp.asarray(v) for a, v in attrs.items()})
        return out

    def finalize(self, out):
        """Derive exception parameters and virtual-site local coordinates from the (possibly
        overridden) slots."""
        for rule in self.rules:
            rule.apply(out)
        return out

    @property
    def provenance(self) -> dict:
        prov = {t: {a: "theta" for a in attrs} for t, attrs in self.maps.items()}
        for t, attrs in self.frozen.items():
            prov.setdefault(t, {}).update({a: "frozen" for a in attrs})
        return prov


jax.tree_util.register_dataclass(ExceptionRule,
                                 data_fields=["atoms", "scale_coulomb", "scale_lj"],
                                 meta_fields=["term"])
jax.tree_util.register_dataclass(VirtualSiteRule, data_fields=[], meta_fields=["group", "type"])
jax.tree_util.register_dataclass(ForceFieldSource, data_fields=["maps", "frozen", "rules"],
                                 meta_fields=[])


def theta_offsets(theta) -> dict[tuple[str, str], int]:
    """Start of each leaf of ``theta`` in ``ravel_pytree(theta)`` order."""
    leaves = jax.tree_util.tree_flatten_with_path(theta)[0]
    out, offset = {}, 0
    for path, leaf in leaves:
        out[tuple(k.key for k in path)] = offset
        offset += int(np.size(leaf))
    return out



def slot_entries(source):
    """(term, attribute, slot, flat theta row) of every slot-map entry that carries weight, for
    a ForceFieldSource or a mixed source over one (whose overridden slots are left out)."""
    overridden: set = set()
    if not isinstance(source, ForceFieldSource) and hasattr(source, "base"):
        overridden = set(source.provenance)
        source = source.base
    if not isinstance(source, ForceFieldSource):
        return
    for term, attrs in source.maps.items():
        for attr, m in attrs.items():
            if (term, attr) in overridden:
                continue
            keep = np.asarray(m.factor) != 0
            for slot, row in zip(np.asarray(m.slot)[keep].tolist(),
                                 np.asarray(m.row)[keep].tolist(), strict=True):
                yield term, attr, slot, row


def used_theta_rows(source) -> np.ndarray:
    """Sorted flat-theta rows that fill at least one slot: the one answer to "which force-field
    parameters does this system use", for the CLI, the fit and ``ForceField.instances``."""
    rows = {row for *_, row in slot_entries(source)}
    return np.asarray(sorted(rows), np.int64)
