"""SMIRNOFF virtual sites (setup layer): per-molecule site templates and their assembly into
local-coordinates VirtualSites groups whose geometry and charges are slots over theta.

Conventions are OpenFF Interchange's export to OpenMM: particles are numbered atoms first,
then sites; each site takes ``-sum(charge_increment_k)`` and orientation atom k gains
``charge_increment_k``; with the "parents" exclusion policy a site inherits every exception of
its parent atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jax.flatten_util import ravel_pytree

from chronograd.errors import InputError
from chronograd.system.slot_map import SlotMap
from chronograd.system.source import VirtualSiteRule
from chronograd.system.virtual_sites import VirtualSites


@dataclass(kw_only=True)
class SiteTemplate:
    """A molecule's SMIRNOFF virtual sites. Particles are numbered atoms first, then sites
    (local index ``n_atoms + s``); ``exceptions`` pair sites with atoms or sites."""

    types: list  # [S] SMIRNOFF type
    orientations: list  # [S] tuple of atom indices, parent first
    geometry_rows: dict  # {"distance" | "in_plane_angle" | "out_of_plane_angle": [S] rows}
    charge_map: SlotMap  # [S] site charges (minus the sum of increments)
    sigma_rows: np.ndarray
    sigma_factor: np.ndarray
    epsilon_rows: np.ndarray
    exceptions: np.ndarray  # [E, 2] local particle indices
    scale_coulomb: np.ndarray
    scale_lj: np.ndarray

    @property
    def n(self) -> int:
        return len(self.types)


def site_template(rows, mol, pairs, scale_coulomb, scale_lj):
    """(the molecule's SiteTemplate, SlotMap of the increments added to parent atoms or None).

    Conventions as OpenFF Interchange exports them to OpenMM: each site takes
    ``-sum(charge_increment_k)`` and orientation atom k gains ``charge_increment_k``; with
    the "parents" exclusion policy a site inherits every exception of its parent atom
    (same scales), is excluded from its parent and from the other sites of that parent.
    """
    from chronograd.forcefield.labeling import virtual_site_matches

    handler = rows.ff.file.handlers.get("VirtualSites")
    matches = virtual_site_matches(rows.ff.file, mol) if handler is not None else []
    n = mol.n_atoms
    empty = np.zeros(0, np.int64)
    if not matches:
        none = SlotMap(0, empty, empty, np.zeros(0), np.zeros(0))
        return SiteTemplate(types=[], orientations=[], geometry_rows={}, charge_map=none,
                            sigma_rows=empty, sigma_factor=np.zeros(0), epsilon_rows=empty,
                            exceptions=np.zeros((0, 2), np.int32),
                            scale_coulomb=np.zeros(0), scale_lj=np.zeros(0)), None
    policy = handler.attributes.get("exclusion_policy", "parents")
    if policy != "parents":
        raise InputError(f"VirtualSites exclusion_policy={policy!r} is not supported"
                         " (only 'parents', as the OpenFF water models use)")
    # types, tagged atoms, geometry attributes and increments per site were checked when
    # the file was read (offxml_checks)
    names = {"distance": "distance", "inPlaneAngle": "in_plane_angle",
             "outOfPlaneAngle": "out_of_plane_angle"}
    types, orientations = [], []
    geometry = {"distance": [], "in_plane_angle": [], "out_of_plane_angle": []}
    q_slot, q_row, q_fac = [], [], []  # site charges
    inc_slot, inc_row = [], []  # increments on parent atoms
    sig_rows, sig_fac, eps_rows = [], [], []
    info = rows.ff.row_info["VirtualSites"].get("charge_increment")
    for s, (pidx, orient) in enumerate(matches):
        p = handler.parameters[pidx]
        types.append(p.strings["type"])
        orientations.append(tuple(int(a) for a in orient))
        for attr, slot_name in names.items():
            geometry[slot_name].append(rows.row("VirtualSites", attr, pidx)
                                       if attr in p.values else -1)
        positions = rows.positions_in_leaf.get(("VirtualSites", "charge_increment"),
                                               {}).get(pidx, [])
        positions = sorted(positions, key=lambda q: info.term[q])
        for k, pos in enumerate(positions):
            row = rows.offsets[("VirtualSites", "charge_increment")] + pos
            q_slot.append(s)
            q_row.append(row)
            q_fac.append(-1.0)
            inc_slot.append(orient[k])
            inc_row.append(row)
        eps_rows.append(rows.row("VirtualSites", "epsilon", pidx))
        row, factor = rows.sigma_row("VirtualSites", p, pidx)
        sig_rows.append(row)
        sig_fac.append(factor)

    # exceptions: sites inherit their parent's, and are excluded from parent and siblings
    children: dict[int, list[int]] = {}
    for s, orient in enumerate(orientations):
        children.setdefault(orient[0], []).append(n + s)
    ex, ex_c, ex_l = [], [], []
    for (a, b), c, lj in zip(pairs.tolist(), scale_coulomb, scale_lj, strict=True):
        for v in children.get(a, []):
            ex.append((v, b)), ex_c.append(c), ex_l.append(lj)
        for v in children.get(b, []):
            ex.append((v, a)), ex_c.append(c), ex_l.append(lj)
        for v1 in children.get(a, []):
            for v2 in children.get(b, []):
                ex.append((v1, v2)), ex_c.append(c), ex_l.append(lj)
    for parent, kids in children.items():
        for v in kids:
            ex.append((parent, v)), ex_c.append(0.0), ex_l.append(0.0)
        for x, v1 in enumerate(kids):
            for v2 in kids[x + 1:]:
                ex.append((v1, v2)), ex_c.append(0.0), ex_l.append(0.0)
    S = len(types)
    sites = SiteTemplate(
        types=types, orientations=orientations,
        geometry_rows={k: np.array(v, np.int64) for k, v in geometry.items()},
        charge_map=SlotMap(S, np.array(q_slot, np.int64), np.array(q_row, np.int64),
                           np.array(q_fac), np.zeros(S)),
        sigma_rows=np.array(sig_rows, np.int64), sigma_factor=np.array(sig_fac),
        epsilon_rows=np.array(eps_rows, np.int64),
        exceptions=np.sort(np.array(ex, np.int32).reshape(-1, 2), axis=1),
        scale_coulomb=np.array(ex_c), scale_lj=np.array(ex_l))
    increments = SlotMap(n, np.array(inc_slot, np.int64), np.array(inc_row, np.int64),
                         np.ones(len(inc_row)), np.zeros(n))
    return sites, increments


# SMIRNOFF virtual-site frames as OpenFF Interchange writes them (OpenMM LocalCoordinatesSite):
# origin, x-direction and y-direction weights over the orientation atoms (parent first).
_FRAMES = {
    "BondCharge": ([1.0, 0.0], [-1.0, 1.0], [-1.0, 1.0]),
    "MonovalentLonePair": ([1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]),
    "DivalentLonePair": ([1.0, 0.0, 0.0], [-1.0, 0.5, 0.5], [-1.0, 1.0, 0.0]),
    "TrivalentLonePair": ([1.0, 0.0, 0.0, 0.0], [-1.0, 1 / 3, 1 / 3, 1 / 3],
                          [-1.0, 1.0, 0.0, 0.0]),
}


def assemble_virtual_sites(ff, site_parts, maps, rules) -> tuple:
    """One local-coordinates VirtualSites group per SMIRNOFF type, whose local coordinates
    are slots (``maps["VirtualSites/<type>"]``) derived from theta by a VirtualSiteRule."""
    flat = np.asarray(ravel_pytree(ff.params)[0])
    groups = []
    for kind, frame in _FRAMES.items():
        sites, parents, rows = [], [], {"distance": [], "in_plane_angle": [],
                                        "out_of_plane_angle": []}
        for sp, atom_offset, site_offset, _ in site_parts:
            for s, t in enumerate(sp.types):
                if t != kind:
                    continue
                sites.append(site_offset + s)
                parents.append([a + atom_offset for a in sp.orientations[s]])
                for name in rows:
                    rows[name].append(sp.geometry_rows[name][s])
        if not sites:
            continue
        name = f"VirtualSites/{kind}"
        maps[name] = {k: SlotMap.gather(v) for k, v in rows.items() if min(v) >= 0}
        rule = VirtualSiteRule(name, kind)
        rules.append(rule)
        slots = {name: {k: m.apply_host(flat) for k, m in maps[name].items()}}
        rule.apply(slots)
        local = np.asarray(slots[name]["local_position"])
        weights = np.concatenate([np.tile(np.concatenate(frame), (len(sites), 1)), local],
                                 axis=1)
        groups.append(VirtualSites("local_coordinates", np.array(sites, np.int32),
                                   np.array(parents, np.int32), weights, name=name))
    return tuple(groups)
