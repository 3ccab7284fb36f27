"""A System's static structure as data: the pytree compiled energy functions take as input.

``SystemStructure`` gathers what a system fixes when it is built: its terms (atom-index arrays,
periodicities, exception and pair lists), its ParameterSource (slot maps: COO rows, slots and
factors, frozen values, exception rules) and its virtual-site groups. Arrays are pytree
*leaves*, passed into ``jit``-compiled functions as arguments, never baked in as constants;
names, methods and options are static (part of the tree structure). So systems of different
molecules with arrays of the same shapes share one compiled program, and stacked structures
(``batch.py``) are ``vmap``-ped over.

A ParameterSource that is not a pytree (a Python function, a mixed source holding model
functions) is kept whole as static data: it still works, compiled once per source object.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from chronograd.system.virtual_sites import place_virtual_sites


@dataclass(frozen=True)
class SystemStructure:
    """terms (tuple of terms), source (ParameterSource pytree, OpaqueSource or None),
    virtual_sites (tuple of VirtualSites)."""

    terms: tuple
    source: object
    virtual_sites: tuple


@dataclass(frozen=True, eq=False)
class OpaqueSource:
    """A source that is not a pytree, held as static data (hashed by identity)."""

    fn: object

    def __call__(self, params):
        return self.fn(params)


jax.tree_util.register_dataclass(SystemStructure,
                                 data_fields=["terms", "source", "virtual_sites"],
                                 meta_fields=[])
jax.tree_util.register_dataclass(OpaqueSource, data_fields=[], meta_fields=["fn"])


def _is_pytree_node(obj) -> bool:
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    return not (treedef.num_leaves == 1 and leaves and leaves[0] is obj)


def structure_of(terms, source, virtual_sites) -> SystemStructure:
    """The structure pytree of a system's parts (non-pytree sources wrapped as static)."""
    if source is not None and not _is_pytree_node(source):
        source = OpaqueSource(source)
    return SystemStructure(tuple(terms), source, tuple(virtual_sites))


def slots_of(structure: SystemStructure, params):
    """System slot values ``{term: {attribute: array}}`` from ``params`` (traced)."""
    return params if structure.source is None else structure.source(params)


def place_sites(structure: SystemStructure, positions, slots):
    """Positions with virtual sites placed from their parents (unchanged without sites)."""
    if not structure.virtual_sites:
        return positions
    return place_virtual_sites(positions, structure.virtual_sites, slots)


def term_energies(structure: SystemStructure, positions, box, slots, pairs=None) -> dict:
    """{reported term name: kJ/mol}; terms reporting the same name (the same physics, e.g.
    proper and improper periodic torsions) are summed."""
    out: dict = {}
    for term in structure.terms:
        for name, value in term.energy_terms(positions, box, slots[term.name], pairs).items():
            out[name] = out[name] + value if name in out else value
    return out


def term_total(term, positions, box, slots, pairs=None):
    """One term's total energy, kJ/mol: its ``energy`` when it has one (a cheaper program for
    the same sum, e.g. the nonbonded term's one-output pair kernel), else the sum of its
    ``energy_terms``."""
    if hasattr(term, "energy"):
        return term.energy(positions, box, slots[term.name], pairs)
    return sum(term.energy_terms(positions, box, slots[term.name], pairs).values())


def total_of_terms(structure: SystemStructure, positions, box, slots, pairs=None):
    """Total energy of all terms at positions with sites placed, kJ/mol."""
    return sum(term_total(term, positions, box, slots, pairs) for term in structure.terms)


# energy_terms and total_energy are jitted so that code tracing them many times (a line
# search, vmap over a batch, a custom VJP) traces each once per argument shapes: inside
# another jit they are inlined, so compiled programs do not change.
@jax.jit
def energy_terms(structure: SystemStructure, positions, box, params, pairs=None) -> dict:
    """Pure ``{term: kJ/mol}`` of a structure at ``positions`` (sites placed here)."""
    slots = slots_of(structure, params)
    x = place_sites(structure, positions, slots)
    return term_energies(structure, x, box, slots, pairs)


@jax.jit
def total_energy(structure: SystemStructure, positions, box, params, pairs=None):
    """Pure total potential energy, kJ/mol (equal to the sum of ``energy_terms``)."""
    slots = slots_of(structure, params)
    x = place_sites(structure, positions, slots)
    return total_of_terms(structure, x, box, slots, pairs)


def term_names(structure: SystemStructure) -> tuple[str, ...]:
    """Reported term names, in order, each once."""
    seen: dict[str, None] = {}
    for term in structure.terms:
        for name in term.term_names():
            seen.setdefault(name, None)
    return tuple(seen)
