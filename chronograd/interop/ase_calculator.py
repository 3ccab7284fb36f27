"""An ASE calculator for any chronograd System (force field, learned parameters, learned
potential, or a mix), so ASE's optimizers, dynamics and tools run on it.

ASE works in eV and Å; chronograd in kJ/mol and nm. The calculator converts at the edge with
ASE's own constants (``ase.units``): energies x (kJ/mol in eV), positions / 10, forces
x (kJ/mol/nm in eV/Å). A periodic system takes the Atoms' cell, which must be in OpenMM's
reduced form (a lower-triangular cell: a along x, b in the xy plane) -- the form chronograd's
boxes use.

    from chronograd.interop.ase_calculator import ChronogradCalculator
    atoms.calc = ChronogradCalculator(system)
    ase.optimize.BFGS(atoms).run(fmax=0.05)
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes

from chronograd.errors import InputError

KJ_PER_MOL_IN_EV = units.kJ / units.mol
NM_IN_ANGSTROM = 10.0


class ChronogradCalculator(Calculator):
    """ASE calculator computing ``energy`` (eV) and ``forces`` (eV/Å) with ``system`` (and
    ``params``, default: the system's own)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, system, params=None, **kwargs):
        super().__init__(**kwargs)
        self.system = system
        self.params = params

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if len(atoms) != self.system.n_atoms:
            raise InputError(f"the Atoms object has {len(atoms)} atoms but the system has"
                             f" {self.system.n_atoms} particles")
        positions = atoms.get_positions() / NM_IN_ANGSTROM
        box = None
        if self.system.periodic:
            if not all(atoms.pbc):
                raise InputError("this system is periodic: give the Atoms a cell and pbc=True")
            box = np.asarray(atoms.get_cell()) / NM_IN_ANGSTROM
        energy, forces = self.system.energy_and_forces(positions, box, self.params)
        if not np.isfinite(energy):
            raise InputError(f"the energy is not finite ({energy}); check for overlapping atoms")
        self.results["energy"] = energy * KJ_PER_MOL_IN_EV
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = np.asarray(forces) * KJ_PER_MOL_IN_EV / NM_IN_ANGSTROM
