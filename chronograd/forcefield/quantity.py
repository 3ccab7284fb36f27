"""Quantities as written in SMIRNOFF files: ``"1.52 * angstrom ** 1"``,
``"430.4 * kilocalorie_per_mole ** 1 * angstrom ** -2"``.

A quantity string is a number times a product of unit names raised to integer powers (``*``,
``/``, ``**``), parsed by ``chronograd.units`` (the one unit parser) into internal units (nm,
kJ/mol, rad, e). The original unit expression is kept so that fitted values can be written back
in the file's units. ``DIMENSIONS`` says what each SMIRNOFF attribute must measure.
"""

from __future__ import annotations

from chronograd import units as u
from chronograd.units import parse_quantity as _parse

_ENERGY_PER_LENGTH2 = u.dimension_product((u.MOLAR_ENERGY, 1), (u.LENGTH, -2))
_ENERGY_PER_ANGLE2 = u.dimension_product((u.MOLAR_ENERGY, 1), (u.ANGLE, -2))

# (handler, attribute without its index) -> dimension. Angles are compared up to radians
# (dimensionless in SI, as the OpenFF toolkit's units treat them).
DIMENSIONS = {
    ("Bonds", "length"): u.LENGTH, ("Bonds", "k"): _ENERGY_PER_LENGTH2,
    ("Constraints", "distance"): u.LENGTH,
    ("Angles", "angle"): u.ANGLE, ("Angles", "k"): _ENERGY_PER_ANGLE2,
    ("ProperTorsions", "k"): u.MOLAR_ENERGY, ("ProperTorsions", "phase"): u.ANGLE,
    ("ImproperTorsions", "k"): u.MOLAR_ENERGY, ("ImproperTorsions", "phase"): u.ANGLE,
    ("vdW", "epsilon"): u.MOLAR_ENERGY, ("vdW", "sigma"): u.LENGTH,
    ("vdW", "rmin_half"): u.LENGTH,
    ("LibraryCharges", "charge"): u.CHARGE,
    ("ChargeIncrementModel", "charge_increment"): u.CHARGE,
    ("VirtualSites", "distance"): u.LENGTH, ("VirtualSites", "inPlaneAngle"): u.ANGLE,
    ("VirtualSites", "outOfPlaneAngle"): u.ANGLE,
    ("VirtualSites", "charge_increment"): u.CHARGE, ("VirtualSites", "epsilon"): u.MOLAR_ENERGY,
    ("VirtualSites", "sigma"): u.LENGTH, ("VirtualSites", "rmin_half"): u.LENGTH,
    # handler settings
    ("vdW", "cutoff"): u.LENGTH, ("vdW", "switch_width"): u.LENGTH,
    ("Electrostatics", "cutoff"): u.LENGTH, ("Electrostatics", "switch_width"): u.LENGTH,
}
IGNORED_DIMENSIONS = ("angle",)


def expected_dimension(handler: str, attribute: str) -> dict[str, int] | None:
    """The dimension an attribute (``k1``, ``sigma``, ...) of ``handler`` must have."""
    return DIMENSIONS.get((handler, attribute.rstrip("0123456789")))


def parse_quantity(text: str, expected: dict[str, int] | None = None) -> tuple[float, str]:
    """(value in internal units, unit expression) of ``"<number> * <units>"``; a bare number is
    dimensionless. With ``expected``, units of another dimension are refused (angles aside).

    Raises:
        InputError: no number, a non-finite value, unknown units or the wrong dimension.
    """
    return _parse(str(text).strip(), expected, ignore=IGNORED_DIMENSIONS)


def unit_factor(expression: str) -> float:
    """Factor converting a unit expression (e.g. ``mole ** -1 * kilocalorie``) to internal
    units."""
    return u.parse_unit(expression)[0]


def format_quantity(value: float, units: str) -> str:
    """Write an internal-unit value back in ``units`` (the file's own expression)."""
    if not units:
        return repr(float(value))
    return f"{float(value) / unit_factor(units)!r} * {units}"
