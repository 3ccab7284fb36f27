"""Assemble a differentiable System from a SMIRNOFF force field and molecules (setup layer).

Each unique molecule is typed once into a ``Template``; copies (solvent) reuse it with shifted
atom indices. Every slot of the system refers to theta through a SlotMap, so evaluating the
system at a new theta never re-types. The parts live beside this file: valence terms
(``valence.py``, with the improper trefoil), charge models (``charge_models.py``), SMIRNOFF
virtual sites (``smirnoff_sites.py``), theta rows (``theta_rows.py``); nonbonded settings come
from the builder shared with OpenMM import (``system/nonbonded_settings.py``). Library charges
apply to molecules they cover completely, 1-2 and 1-3 pairs are excluded and 1-4 pairs scaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jax.flatten_util import ravel_pytree

from chronograd.errors import InputError
from chronograd.forcefield.charge_models import charge_map
from chronograd.forcefield.labeling import label_molecule
from chronograd.forcefield.quantity import parse_quantity
from chronograd.forcefield.smirnoff_sites import (
    SiteTemplate,
    assemble_virtual_sites,
    site_template,
)
from chronograd.forcefield.theta_rows import ThetaRows
from chronograd.forcefield.valence import Valence, lookup, valence_terms
from chronograd.system.nonbonded_settings import nonbonded_term
from chronograd.system.slot_map import SlotMap
from chronograd.system.source import ExceptionRule, ForceFieldSource
from chronograd.system.system import System
from chronograd.system.terms import HarmonicAngleTerm, HarmonicBondTerm, PeriodicTorsionTerm
from chronograd.topology.molecule import Molecule

EWALD_TOLERANCE = 1e-4  # what OpenFF Interchange passes to OpenMM


@dataclass(kw_only=True)
class Template:
    """One molecule typed: valence entries, per-atom vdW rows, its charge map, 1-2/1-3
    exclusions and scaled 1-4 pairs, masses and virtual sites (local indices)."""

    valence: Valence
    sigma_rows: np.ndarray
    sigma_factor: np.ndarray
    epsilon_rows: np.ndarray
    charge_map: SlotMap  # charges: library rows, or base charges + increments
    exceptions: np.ndarray
    scale_coulomb: np.ndarray
    scale_lj: np.ndarray
    masses: np.ndarray
    sites: SiteTemplate


def scale14(ff) -> dict[str, float]:
    """{"vdW": s, "Electrostatics": s}: the 1-4 scales (1-2 and 1-3 must be 0, 1-5 1)."""
    out = {}
    for name in ("vdW", "Electrostatics"):
        attrs = ff.file.handlers[name].attributes
        if float(attrs.get("scale12", 0)) != 0 or float(attrs.get("scale13", 0)) != 0 or \
                float(attrs.get("scale15", 1)) != 1:
            raise InputError(f"{name}: only scale12 = scale13 = 0 and scale15 = 1 are"
                             " supported")
        out[name] = float(attrs.get("scale14", 0.5))
    return out


def molecule_template(rows: ThetaRows, mol: Molecule, charges: str | None) -> Template:
    """Type one molecule (labels once) into a Template."""
    ff = rows.ff
    labels = label_molecule(ff.file, mol).assignments
    valence = valence_terms(rows, mol, labels)

    sig_rows, sig_fac, eps_rows = [], [], []
    vdw = ff.file.handlers["vdW"]
    for a in range(mol.n_atoms):
        pidx = lookup(labels, mol, "vdW", (a,), "atom (vdW)")
        eps_rows.append(rows.row("vdW", "epsilon", pidx))
        row, factor = rows.sigma_row("vdW", vdw.parameters[pidx], pidx)
        sig_rows.append(row)
        sig_fac.append(factor)

    charge = charge_map(rows, mol, labels, charges)
    scales = scale14(ff)
    dist = mol.graph_distances()
    i, j = np.nonzero(np.triu((dist >= 1) & (dist <= 3)))
    d = dist[i, j]
    sc = np.where(d == 3, scales["Electrostatics"], 0.0)
    sl = np.where(d == 3, scales["vdW"], 0.0)
    sites, increments = site_template(rows, mol, np.stack([i, j], axis=1), sc, sl)
    if increments is not None:  # charge increments moved from parent atoms to their sites
        charge = SlotMap(mol.n_atoms, np.concatenate([charge.slot, increments.slot]),
                         np.concatenate([charge.row, increments.row]),
                         np.concatenate([charge.factor, increments.factor]), charge.constant)
    return Template(valence=valence, sigma_rows=np.array(sig_rows),
                    sigma_factor=np.array(sig_fac), epsilon_rows=np.array(eps_rows),
                    charge_map=charge, exceptions=np.stack([i, j], axis=1).astype(np.int32),
                    scale_coulomb=sc, scale_lj=sl, masses=mol.masses, sites=sites)


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
    rows = ThetaRows(ff)
    templates: dict[str, Template] = {}
    parts, offset = [], 0
    for mol in molecules:
        key = mol.identity() + (f"|{charges}|" + (mol.partial_charges.tobytes().hex()
                                                  if charges == "from-file" and
                                                  mol.partial_charges is not None else ""))
        if key not in templates:
            templates[key] = molecule_template(rows, mol, charges)
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
    def field_of(t, field):
        """A Template field, or a Valence one ("propers.atoms" for a torsion field)."""
        obj = t if hasattr(t, field.split(".")[0]) else t.valence
        for part in field.split("."):
            obj = getattr(obj, part)
        return obj

    def atoms(field, width):
        return _cat([field_of(t, field) + o for t, o in parts], np.int32,
                    width).reshape(-1, width)

    def rows(field, attr):
        return _cat([field_of(t, field)[attr] for t, o in parts], np.int64)

    def values(field):
        return _cat([field_of(t, field) for t, o in parts])

    maps = {
        "Bonds": {"length": SlotMap.gather(rows("bond_rows", "length")),
                  "k": SlotMap.gather(rows("bond_rows", "k"))},
        "Angles": {"angle": SlotMap.gather(rows("angle_rows", "angle")),
                   "k": SlotMap.gather(rows("angle_rows", "k"))},
        "ProperTorsions": {"k": SlotMap.gather(rows("propers.rows", "k"),
                                               values("propers.factor")),
                           "phase": SlotMap.gather(rows("propers.rows", "phase"))},
        "ImproperTorsions": {"k": SlotMap.gather(rows("impropers.rows", "k"),
                                                 values("impropers.factor")),
                             "phase": SlotMap.gather(rows("impropers.rows", "phase"))},
    }
    # particles: every molecule's atoms, then every molecule's virtual sites (Interchange order)
    site_parts, n_sites = [], 0
    for t, o in parts:
        site_parts.append((t.sites, o, n_atoms + n_sites, t.masses.shape[0]))
        n_sites += t.sites.n

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
    virtual_sites = assemble_virtual_sites(ff, site_parts, maps, rules)
    source = ForceFieldSource(maps, rules=tuple(rules))

    vdw = ff.file.handlers["vdW"].attributes
    cutoff = parse_quantity(vdw.get("cutoff", "9.0 * angstrom"))[0]
    switch_width = parse_quantity(vdw.get("switch_width", "1.0 * angstrom"))[0]
    flat = np.asarray(ravel_pytree(ff.params)[0])
    sig = nonbonded_maps["sigma"].apply_host(flat)
    eps = nonbonded_maps["epsilon"].apply_host(flat)
    common = {"name": "Nonbonded", "exception_atoms": exceptions, "sigma": sig,
              "epsilon": eps, "cutoff": cutoff}
    if box is None:
        nb = nonbonded_term(method="NoCutoff", **common)
    else:
        box = np.asarray(box, dtype=np.float64)
        nb = nonbonded_term(method="PME", box=box, ewald_error_tolerance=EWALD_TOLERANCE,
                            switch_distance=cutoff - switch_width if switch_width > 0 else None,
                            use_dispersion_correction=True, **common)
    terms = (
        HarmonicBondTerm("Bonds", atoms("bonds", 2)),
        HarmonicAngleTerm("Angles", atoms("angles", 3)),
        PeriodicTorsionTerm("ProperTorsions", atoms("propers.atoms", 4),
                            periodicity=values("propers.periodicity").astype(np.int32)),
        PeriodicTorsionTerm("ImproperTorsions", atoms("impropers.atoms", 4),
                            periodicity=values("impropers.periodicity").astype(np.int32)),
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
