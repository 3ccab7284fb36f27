"""Molecules over RDKit."""

from chronograd.topology.molecule import Molecule

__all__ = ["Molecule"]
