"""Assemble a differentiable System from a SMIRNOFF force field and molecules (setup layer).

Each unique molecule is typed once; copies (solvent) reuse its template with shifted atom
indices. Every slot of the system refers to theta through a SlotMap, so evaluating the system at
a new theta never re-types. Conventions follow the SMIRNOFF spec as the OpenFF toolkit and
Interchange apply it: constrained bonds have no harmonic term, impropers are the three cyclic
permutations of the outer atoms around the centre with k / idivf (``auto`` = 3), library charges
apply to molecules they cover completely, 1-2 and 1-3 pairs are excluded and 1-4 pairs scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jax.flatten_util import ravel_pytree

from chronograd.errors import InputError
from chronograd.forcefield.charges import assign_charges
from chronograd.forcefield.labeling import (
    canonical_key,
    charge_increment_matches,
    label_molecule,
)
from chronograd.forcefield.quantity import parse_quantity
from chronograd.potentials.dispersion import lj_classes
from chronograd.potentials.ewald import pme_parameters
from chronograd.system.nonbonded import NonbondedTerm
from chronograd.system.slot_map import SlotMap
from chronograd.system.source import (
    ExceptionRule,
    ForceFieldSource,
    VirtualSiteRule,
    theta_offsets,
)
from chronograd.system.system import System
from chronograd.system.terms import HarmonicAngleTerm, HarmonicBondTerm, PeriodicTorsionTerm
from chronograd.system.virtual_sites import VirtualSites
from chronograd.topology.molecule import Molecule

RMIN_HALF_TO_SIGMA = 2.0 / 2.0 ** (1.0 / 6.0)
EWALD_TOLERANCE = 1e-4  # what OpenFF Interchange passes to OpenMM


@dataclass
class _Template:
    """One molecule's terms with theta rows (flat indices), before offsetting atoms."""

    bonds: np.ndarray
    bond_rows: dict
    angles: np.ndarray
    angle_rows: dict
    propers: np.ndarray
    proper_periodicity: np.ndarray
    proper_rows: dict
    proper_factor: np.ndarray
    impropers: np.ndarray
    improper_periodicity: np.ndarray
    improper_rows: dict
    improper_factor: np.ndarray
    sigma_rows: np.ndarray
    sigma_factor: np.ndarray
    epsilon_rows: np.ndarray
    charge_map: SlotMap  # charges: library rows, or base charges + increments
    constraints: np.ndarray
    constraint_distances: np.ndarray
    exceptions: np.ndarray
    scale_coulomb: np.ndarray
    scale_lj: np.ndarray
    masses: np.ndarray
    sites: _Sites


@dataclass
class _Sites:
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


def _describe(mol: Molecule, atoms) -> str:
    sym = [mol.rdmol.GetAtomWithIdx(int(a)).GetSymbol() for a in atoms]
    return f"atoms {tuple(int(a) for a in atoms)} ({'-'.join(sym)}) of {mol.name or 'molecule'}"


class _Builder:
    def __init__(self, ff):
        self.ff = ff
        self.offsets = theta_offsets(ff.params)
        # per (handler, attribute): parameter index -> its positions in that theta leaf
        self.positions_in_leaf = {}
        for handler, attrs in ff.row_info.items():
            for attr, info in attrs.items():
                table = self.positions_in_leaf[(handler, attr)] = {}
                for pos, pidx in enumerate(info.parameter_index):
                    table.setdefault(pidx, []).append(pos)

    def row(self, handler, attr, pidx):
        """Flat theta row of a single-valued attribute of parameter ``pidx``."""
        return self.offsets[(handler, attr)] + self.positions_in_leaf[(handler, attr)][pidx][0]

    def sigma_row(self, handler, p, pidx) -> tuple[int, float]:
        """(theta row, factor) giving sigma: the sigma row, or rmin_half * 2^(5/6)."""
        if "sigma" in p.values:
            return self.row(handler, "sigma", pidx), 1.0
        return self.row(handler, "rmin_half", pidx), RMIN_HALF_TO_SIGMA

    def template(self, mol: Molecule, charges: str) -> _Template:
        ff = self.ff
        labels = label_molecule(ff.file, mol).assignments
        handlers = ff.file.handlers

        # Constraints (h-bonds, rigid water): distance from the constraint or the bond length.
        cons, cons_d = [], []
        for key, pidx in sorted(labels.get("Constraints", {}).items()):
            p = handlers["Constraints"].parameters[pidx]
            if "distance" in p.values:
                d = p.values["distance"]
            else:
                bidx = labels.get("Bonds", {}).get(key)
                if bidx is None:
                    raise InputError(f"constraint {p.id} on {_describe(mol, key)} has no distance"
                                     " and no Bonds parameter to take it from")
                d = handlers["Bonds"].parameters[bidx].values["length"]
            cons.append(key)
            cons_d.append(d)
        constrained = set(cons)

        def lookup(handler, key, what):
            pidx = labels.get(handler, {}).get(key)
            if pidx is None:
                raise InputError(f"no {handler} parameter matches {_describe(mol, key)};"
                                 f" the force field cannot type this {what}")
            return pidx

        bonds, b_len, b_k = [], [], []
        for key in map(tuple, mol.bonds() if "Bonds" in handlers else []):
            pidx = lookup("Bonds", key, "bond")
            if key in constrained:
                continue
            bonds.append(key)
            b_len.append(self.row("Bonds", "length", pidx))
            b_k.append(self.row("Bonds", "k", pidx))
        angles, a_ang, a_k = [], [], []
        for key in map(tuple, mol.angles() if "Angles" in handlers else []):
            pidx = lookup("Angles", canonical_key("Angles", key), "angle")
            i, j, k = key
            if ((i, k) in constrained and tuple(sorted((i, j))) in constrained
                    and tuple(sorted((j, k))) in constrained):
                continue  # rigid triangle (e.g. TIP3P)
            angles.append(key)
            a_ang.append(self.row("Angles", "angle", pidx))
            a_k.append(self.row("Angles", "k", pidx))

        def torsion_entries(handler, keys_and_params, permute):
            if not keys_and_params:
                return (np.zeros((0, 4), np.int32), np.zeros(0, np.int32),
                        {"k": np.zeros(0, int), "phase": np.zeros(0, int)}, np.zeros(0))
            atoms, per, k_rows, ph_rows, factor = [], [], [], [], []
            info = ff.row_info[handler]["k"]
            default = handlers[handler].attributes.get("default_idivf", "auto")
            for key, pidx in keys_and_params:
                for pos in self.positions_in_leaf[(handler, "k")][pidx]:
                    idivf = info.idivf[pos]
                    if idivf is None:
                        idivf = (3.0 if handler == "ImproperTorsions" else 1.0) if default == \
                            "auto" else float(default)
                    for t in permute(key):
                        atoms.append(t)
                        per.append(info.periodicity[pos])
                        k_rows.append(self.offsets[(handler, "k")] + pos)
                        ph_rows.append(self.offsets[(handler, "phase")] + pos)
                        factor.append(1.0 / idivf)
            return (np.array(atoms, np.int32).reshape(-1, 4), np.array(per, np.int32),
                    {"k": np.array(k_rows), "phase": np.array(ph_rows)}, np.array(factor))

        propers = [(tuple(t), lookup("ProperTorsions", tuple(t), "proper torsion"))
                   for t in (mol.propers() if "ProperTorsions" in handlers else [])]
        p_atoms, p_per, p_rows, p_fac = torsion_entries("ProperTorsions", propers, lambda k: [k])
        impropers = sorted(labels.get("ImproperTorsions", {}).items())

        def trefoil(key):
            outer = (key[0], key[2], key[3])
            return [(key[1], outer[a], outer[b], outer[c])
                    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1))]

        i_atoms, i_per, i_rows, i_fac = torsion_entries("ImproperTorsions", impropers, trefoil)

        sig_rows, sig_fac, eps_rows = [], [], []
        vdw = handlers["vdW"]
        for a in range(mol.n_atoms):
            pidx = lookup("vdW", (a,), "atom (vdW)")
            p = vdw.parameters[pidx]
            eps_rows.append(self.row("vdW", "epsilon", pidx))
            row, factor = self.sigma_row("vdW", p, pidx)
            sig_rows.append(row)
            sig_fac.append(factor)

        charge_map = self._charges(mol, labels, charges)

        scales = self._scales()
        dist = mol.graph_distances()
        i, j = np.nonzero(np.triu((dist >= 1) & (dist <= 3)))
        d = dist[i, j]
        sc = np.where(d == 3, scales["Electrostatics"], 0.0)
        sl = np.where(d == 3, scales["vdW"], 0.0)
        sites, increments = self._virtual_sites(mol, np.stack([i, j], axis=1), sc, sl)
        if increments is not None:  # charge increments moved from parent atoms to their sites
            charge_map = SlotMap(mol.n_atoms,
                                 np.concatenate([charge_map.slot, increments.slot]),
                                 np.concatenate([charge_map.row, increments.row]),
                                 np.concatenate([charge_map.factor, increments.factor]),
                                 charge_map.constant)
        return _Template(
            np.array(bonds, np.int32).reshape(-1, 2), {"length": np.array(b_len),
                                                       "k": np.array(b_k)},
            np.array(angles, np.int32).reshape(-1, 3), {"angle": np.array(a_ang),
                                                        "k": np.array(a_k)},
            p_atoms, p_per, p_rows, p_fac, i_atoms, i_per, i_rows, i_fac,
            np.array(sig_rows), np.array(sig_fac), np.array(eps_rows), charge_map,
            np.array(cons, np.int32).reshape(-1, 2), np.array(cons_d),
            np.stack([i, j], axis=1).astype(np.int32), sc, sl, mol.masses, sites,
        )

    def _virtual_sites(self, mol, pairs, scale_coulomb, scale_lj):
        """(the molecule's _Sites, SlotMap of the increments added to parent atoms or None).

        Conventions as OpenFF Interchange exports them to OpenMM: each site takes
        ``-sum(charge_increment_k)`` and orientation atom k gains ``charge_increment_k``; with
        the "parents" exclusion policy a site inherits every exception of its parent atom
        (same scales), is excluded from its parent and from the other sites of that parent.
        """
        from chronograd.forcefield.labeling import virtual_site_matches

        handler = self.ff.file.handlers.get("VirtualSites")
        matches = virtual_site_matches(self.ff.file, mol) if handler is not None else []
        n = mol.n_atoms
        empty = np.zeros(0, np.int64)
        if not matches:
            none = SlotMap(0, empty, empty, np.zeros(0), np.zeros(0))
            return _Sites([], [], {}, none, empty, np.zeros(0), empty,
                          np.zeros((0, 2), np.int32), np.zeros(0), np.zeros(0)), None
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
        info = self.ff.row_info["VirtualSites"].get("charge_increment")
        for s, (pidx, orient) in enumerate(matches):
            p = handler.parameters[pidx]
            types.append(p.strings["type"])
            orientations.append(tuple(int(a) for a in orient))
            for attr, slot_name in names.items():
                geometry[slot_name].append(self.row("VirtualSites", attr, pidx)
                                           if attr in p.values else -1)
            positions = self.positions_in_leaf.get(("VirtualSites", "charge_increment"),
                                                   {}).get(pidx, [])
            positions = sorted(positions, key=lambda q: info.term[q])
            for k, pos in enumerate(positions):
                row = self.offsets[("VirtualSites", "charge_increment")] + pos
                q_slot.append(s)
                q_row.append(row)
                q_fac.append(-1.0)
                inc_slot.append(orient[k])
                inc_row.append(row)
            eps_rows.append(self.row("VirtualSites", "epsilon", pidx))
            row, factor = self.sigma_row("VirtualSites", p, pidx)
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
        sites = _Sites(
            types, orientations, {k: np.array(v, np.int64) for k, v in geometry.items()},
            SlotMap(S, np.array(q_slot, np.int64), np.array(q_row, np.int64), np.array(q_fac),
                    np.zeros(S)),
            np.array(sig_rows, np.int64), np.array(sig_fac), np.array(eps_rows, np.int64),
            np.sort(np.array(ex, np.int32).reshape(-1, 2), axis=1), np.array(ex_c),
            np.array(ex_l))
        increments = SlotMap(n, np.array(inc_slot, np.int64), np.array(inc_row, np.int64),
                             np.ones(len(inc_row)), np.zeros(n))
        return sites, increments

    def _charges(self, mol, labels, charges) -> SlotMap:
        """Library charges if they cover the molecule; else explicit ``charges`` (overriding
        the force field's model, like OpenFF's charge_from_molecules); else the force field's
        ChargeIncrementModel (base method + increments from theta) or ToolkitAM1BCC."""
        rows = self._library_charges(mol, labels)
        if rows is not None:
            return SlotMap.gather(rows)
        n = mol.n_atoms
        empty = np.zeros(0, np.int64)
        handlers = self.ff.file.handlers
        if charges is not None:
            return SlotMap(n, empty, empty, np.zeros(0), assign_charges(mol, charges))
        if "ChargeIncrementModel" in handlers:
            return self._charge_increments(mol)
        if "ToolkitAM1BCC" in handlers:
            return SlotMap(n, empty, empty, np.zeros(0), assign_charges(mol, "am1bcc"))
        raise InputError(f"{mol.name}: no LibraryCharges cover this molecule and the force field"
                         " has no charge model; pass charges='am1bcc', 'gasteiger' or"
                         " 'from-file'")

    def _charge_increments(self, mol) -> SlotMap:
        handler = self.ff.file.handlers["ChargeIncrementModel"]
        method = handler.attributes.get("partial_charge_method", "formal_charge")
        base_methods = {"formal_charge": None, "zeros": None, "am1bcc": "am1bcc",
                        "gasteiger": "gasteiger"}
        if method.lower() not in base_methods:
            raise InputError(f"ChargeIncrementModel partial_charge_method={method!r} is not"
                             f" supported; supported: {sorted(base_methods)}")
        if method.lower() == "formal_charge":
            base = np.array([a.GetFormalCharge() for a in mol.rdmol.GetAtoms()], float)
        elif method.lower() == "zeros":
            base = np.zeros(mol.n_atoms)
        else:
            base = assign_charges(mol, base_methods[method.lower()])
        info = self.ff.row_info.get("ChargeIncrementModel", {}).get("charge_increment")
        slots, rows, factors = [], [], []
        for match, pidx in charge_increment_matches(self.ff.file, mol):
            positions = self.positions_in_leaf[("ChargeIncrementModel", "charge_increment")][pidx]
            given = [self.offsets[("ChargeIncrementModel", "charge_increment")] + p
                     for p in sorted(positions, key=lambda p: info.term[p])]
            for k, row in enumerate(given):  # n or n - 1 increments (checked when read)
                slots.append(match[k])
                rows.append(row)
                factors.append(1.0)
            if len(given) == len(match) - 1:  # the last atom balances the others
                for row in given:
                    slots.append(match[-1])
                    rows.append(row)
                    factors.append(-1.0)
        return SlotMap(mol.n_atoms, np.array(slots, np.int64), np.array(rows, np.int64),
                       np.array(factors), base)

    def _library_charges(self, mol, labels):
        lib = labels.get("LibraryCharges", {})
        if not lib:
            return None
        rows = np.full(mol.n_atoms, -1)
        info = self.ff.row_info["LibraryCharges"]["charge"]
        for key, pidx in lib.items():
            for pos in self.positions_in_leaf[("LibraryCharges", "charge")][pidx]:
                rows[key[info.term[pos]]] = self.offsets[("LibraryCharges", "charge")] + pos
        return rows if np.all(rows >= 0) else None

    def _scales(self):
        out = {}
        for name in ("vdW", "Electrostatics"):
            attrs = self.ff.file.handlers[name].attributes
            if float(attrs.get("scale12", 0)) != 0 or float(attrs.get("scale13", 0)) != 0 or \
                    float(attrs.get("scale15", 1)) != 1:
                raise InputError(f"{name}: only scale12 = scale13 = 0 and scale15 = 1 are"
                                 " supported")
            out[name] = float(attrs.get("scale14", 0.5))
        return out


def create_system(ff, molecules, *, charges: str | None = None, box=None) -> System:
    """A System for ``molecules`` (a Molecule or a list; copies are typed once).

    Args:
        ff: a chronograd ForceField.
        charges: None to charge molecules as the force field says (LibraryCharges, then
            ChargeIncrementModel, then ToolkitAM1BCC); or "am1bcc", "from-file", "gasteiger"
            to override its charge model for molecules LibraryCharges do not cover.
        box: [3, 3] periodic box (nm) for PME with the force field's cutoff; None for vacuum
            (no cutoff).
    """
    if isinstance(molecules, Molecule):
        molecules = [molecules]
    missing = [h for h in ("vdW", "Electrostatics") if h not in ff.file.handlers]
    if missing:
        raise InputError(f"{ff.file.source}: no <{missing[0]}> handler; a force field needs"
                         " vdW and Electrostatics sections to make a system")
    builder = _Builder(ff)
    templates: dict[str, _Template] = {}
    parts, offset = [], 0
    for mol in molecules:
        key = mol.identity() + (f"|{charges}|" + (mol.partial_charges.tobytes().hex()
                                                  if charges == "from-file" and
                                                  mol.partial_charges is not None else ""))
        if key not in templates:
            templates[key] = builder.template(mol, charges)
        parts.append((templates[key], offset))
        offset += mol.n_atoms
    return _assemble(ff, parts, offset, box)


def _cat(arrays, dtype=None, width=None):
    arrays = list(arrays)
    if not arrays:
        return np.zeros((0, width) if width else 0, dtype)
    out = np.concatenate(arrays)
    return out if dtype is None else out.astype(dtype)


def _assemble(ff, parts, n_atoms, box) -> System:
    def atoms(field, width):
        return _cat([getattr(t, field) + o for t, o in parts], np.int32, width).reshape(-1, width)

    def rows(field, attr):
        return _cat([getattr(t, field)[attr] for t, o in parts], np.int64)

    def values(field):
        return _cat([getattr(t, field) for t, o in parts])

    maps = {
        "Bonds": {"length": SlotMap.gather(rows("bond_rows", "length")),
                  "k": SlotMap.gather(rows("bond_rows", "k"))},
        "Angles": {"angle": SlotMap.gather(rows("angle_rows", "angle")),
                   "k": SlotMap.gather(rows("angle_rows", "k"))},
        "ProperTorsions": {"k": SlotMap.gather(rows("proper_rows", "k"), values("proper_factor")),
                           "phase": SlotMap.gather(rows("proper_rows", "phase"))},
        "ImproperTorsions": {"k": SlotMap.gather(rows("improper_rows", "k"),
                                                 values("improper_factor")),
                             "phase": SlotMap.gather(rows("improper_rows", "phase"))},
    }
    # particles: every molecule's atoms, then every molecule's virtual sites (Interchange order)
    site_parts, n_sites = [], 0
    for t, o in parts:
        site_parts.append((t.sites, o, n_atoms + n_sites, t.masses.shape[0]))
        n_sites += t.sites.n
    n_particles = n_atoms + n_sites

    def site_values(field):
        return _cat([getattr(sp, field) for sp, *_ in site_parts])

    nonbonded_maps = {
        "charge": SlotMap.concatenate([t.charge_map for t, _ in parts]
                                      + [sp.charge_map for sp, *_ in site_parts]),
        "sigma": SlotMap.gather(
            np.concatenate([values("sigma_rows"), site_values("sigma_rows")]).astype(np.int64),
            np.concatenate([values("sigma_factor"), site_values("sigma_factor")])),
        "epsilon": SlotMap.gather(np.concatenate([values("epsilon_rows"),
                                                  site_values("epsilon_rows")]).astype(np.int64)),
    }
    maps["Nonbonded"] = nonbonded_maps

    def to_global(local, atom_offset, site_offset, n_mol):
        return np.where(local < n_mol, local + atom_offset, local - n_mol + site_offset)

    exceptions = np.concatenate(
        [atoms("exceptions", 2)]
        + [to_global(sp.exceptions, o, so, nm) for sp, o, so, nm in site_parts]).astype(np.int32)
    rules = [ExceptionRule(
        "Nonbonded", exceptions,
        np.concatenate([values("scale_coulomb"), site_values("scale_coulomb")]),
        np.concatenate([values("scale_lj"), site_values("scale_lj")]))]
    virtual_sites = _assemble_virtual_sites(ff, site_parts, maps, rules)
    source = ForceFieldSource(maps, rules=tuple(rules))

    vdw = ff.file.handlers["vdW"].attributes
    cutoff = parse_quantity(vdw.get("cutoff", "9.0 * angstrom"))[0]
    switch_width = parse_quantity(vdw.get("switch_width", "1.0 * angstrom"))[0]
    flat = np.asarray(ravel_pytree(ff.params)[0])
    sig = nonbonded_maps["sigma"].apply_host(flat)
    eps = nonbonded_maps["epsilon"].apply_host(flat)
    classes, counts = lj_classes(sig, eps)
    if box is None:
        nb = NonbondedTerm("Nonbonded", n_particles, "NoCutoff", exceptions, classes, counts,
                           cutoff=cutoff)
    else:
        box = np.asarray(box, dtype=np.float64)
        alpha, grid = pme_parameters(cutoff, EWALD_TOLERANCE, box)
        nb = NonbondedTerm("Nonbonded", n_particles, "PME", exceptions, classes, counts,
                           cutoff=cutoff,
                           switch_distance=cutoff - switch_width if switch_width > 0 else None,
                           ewald_error_tolerance=EWALD_TOLERANCE, alpha=alpha, grid=grid,
                           use_dispersion_correction=True)
    terms = (
        HarmonicBondTerm("Bonds", atoms("bonds", 2)),
        HarmonicAngleTerm("Angles", atoms("angles", 3)),
        PeriodicTorsionTerm("ProperTorsions", atoms("propers", 4),
                            periodicity=values("proper_periodicity").astype(np.int32)),
        PeriodicTorsionTerm("ImproperTorsions", atoms("impropers", 4),
                            periodicity=values("improper_periodicity").astype(np.int32)),
        nb,
    )
    return System(
        masses=np.concatenate([values("masses"), np.zeros(n_sites)]),
        terms=terms,
        params=ff.params,
        box=box,
        constraints=atoms("constraints", 2),
        constraint_distances=values("constraint_distances"),
        source=source,
        virtual_sites=virtual_sites,
    )


# SMIRNOFF virtual-site frames as OpenFF Interchange writes them (OpenMM LocalCoordinatesSite):
# origin, x-direction and y-direction weights over the orientation atoms (parent first).
_FRAMES = {
    "BondCharge": ([1.0, 0.0], [-1.0, 1.0], [-1.0, 1.0]),
    "MonovalentLonePair": ([1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]),
    "DivalentLonePair": ([1.0, 0.0, 0.0], [-1.0, 0.5, 0.5], [-1.0, 1.0, 0.0]),
    "TrivalentLonePair": ([1.0, 0.0, 0.0, 0.0], [-1.0, 1 / 3, 1 / 3, 1 / 3],
                          [-1.0, 1.0, 0.0, 0.0]),
}


def _assemble_virtual_sites(ff, site_parts, maps, rules) -> tuple:
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
