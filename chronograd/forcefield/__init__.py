"""SMIRNOFF force fields: reading, SMIRKS labeling, theta, slot maps, system creation."""

from chronograd.forcefield.forcefield import ForceField

__all__ = ["ForceField"]
