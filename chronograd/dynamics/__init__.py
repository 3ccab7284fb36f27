"""Dynamics: integrators with the (init, step) shape, constraints, barostat, the runner."""

from chronograd.dynamics.integrators import (
    Integrator,
    brownian,
    fire_descent,
    gradient_descent,
    langevin,
    nose_hoover,
    nose_hoover_conserved_energy,
    velocity_verlet,
)
from chronograd.dynamics.state import MDState, kinetic_energy, temperature
from chronograd.units import BOLTZMANN

__all__ = [
    "BOLTZMANN",
    "Integrator",
    "MDState",
    "brownian",
    "fire_descent",
    "gradient_descent",
    "kinetic_energy",
    "langevin",
    "nose_hoover",
    "nose_hoover_conserved_energy",
    "temperature",
    "velocity_verlet",
]
