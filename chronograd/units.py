"""Units and physical constants.

chronograd has one internal unit system, the same as OpenMM's:
length nm, time ps, energy kJ/mol, charge e, mass amu (g/mol), temperature K, angle rad.
Conversions happen only where data enters or leaves (readers, writers, the CLI).
"""

from __future__ import annotations

import math

# Coulomb constant 1/(4 pi eps0) in kJ/mol nm e^-2 from CODATA 2018, the value OpenMM >= 8
# uses, so that energies compare with OpenMM's digit for digit.
ONE_4PI_EPS0 = 138.93545764438198

AVOGADRO = 6.02214076e23  # 1/mol
BOLTZMANN = 1.380649e-23  # J/K
MOLAR_GAS_CONSTANT = BOLTZMANN * AVOGADRO / 1000.0  # kB in kJ/mol/K

# Multiply a value in the named unit by these to get internal units.
NANOMETER = 1.0
ANGSTROM = 0.1
PICOSECOND = 1.0
FEMTOSECOND = 1.0e-3
KILOJOULE_PER_MOLE = 1.0
KILOCALORIE_PER_MOLE = 4.184
RADIAN = 1.0
DEGREE = math.pi / 180.0
ELEMENTARY_CHARGE = 1.0
DALTON = 1.0
KELVIN = 1.0
BAR = 1e5 * 1e-27 * AVOGADRO / 1000.0  # kJ/mol/nm^3 per bar (0.0602214076)
ATMOSPHERE = 1.01325 * BAR
