"""Units and physical constants.

chronograd has one internal unit system, the same as OpenMM's:
length nm, time ps, energy kJ/mol, charge e, mass amu (g/mol), temperature K, angle rad.
Conversions happen only where data enters or leaves (readers, writers, the CLI).
"""

from __future__ import annotations

import functools
import math
import re

from chronograd.errors import InputError

# Coulomb constant 1/(4 pi eps0) in kJ/mol nm e^-2 from CODATA 2018, the value OpenMM >= 8
# uses, so that energies compare with OpenMM's digit for digit.
ONE_4PI_EPS0 = 138.93545764438198

AVOGADRO = 6.02214076e23  # 1/mol
# The Boltzmann constant in internal units, kJ/mol/K: k_B N_A = 1.380649e-23 J/K x AVOGADRO
# (CODATA 2018, exact), OpenMM's BOLTZ. The only definition in chronograd.
BOLTZMANN = 0.00831446261815324


def reduced_temperature_to_kelvin(t_reduced: float, epsilon: float = 1.0) -> float:
    """The temperature in K of a reduced temperature T* = k_B T / epsilon (epsilon in kJ/mol):
    particle systems in reduced units (sigma = epsilon = m = 1 are 1 nm, 1 kJ/mol, 1 amu, so
    the time unit is 1 ps) pass this to the integrators."""
    return float(t_reduced) * float(epsilon) / BOLTZMANN

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


# ---- the unit parser --------------------------------------------------------------------------
# Every unit expression chronograd reads (SMIRNOFF attributes, QM data, fit configs, CLI options)
# is parsed here: a product of unit names raised to integer powers ("*", "/", "**", brackets).
# Each name has a factor to internal units and a dimension (exponents of the base dimensions
# below). Energies are molar: kilocalorie_per_mole = energy/amount; hartree and eV, which are
# per particle, are converted to kJ/mol and so carry energy/amount too. Pressure is in bar and
# temperature in K, as OpenMM's barostats and thermostats take them.

HARTREE = 2625.4996394798254  # kJ/mol (CODATA 2018)
BOHR = 0.0529177210903  # nm
ELECTRONVOLT = 96.48533212331002  # kJ/mol

_L, _E, _N, _ANGLE, _Q, _MASS, _TIME, _TEMP, _P = (
    "length", "energy", "amount", "angle", "charge", "mass", "time", "temperature", "pressure")
_MOLAR = {_E: 1, _N: -1}
UNITS: dict[str, tuple[float, dict[str, int]]] = {
    "angstrom": (ANGSTROM, {_L: 1}), "nanometer": (NANOMETER, {_L: 1}),
    "picometer": (1e-3, {_L: 1}), "bohr": (BOHR, {_L: 1}),
    "kilocalorie": (KILOCALORIE_PER_MOLE, {_E: 1}), "kilojoule": (1.0, {_E: 1}),
    "mole": (1.0, {_N: 1}),
    "kilocalorie_per_mole": (KILOCALORIE_PER_MOLE, _MOLAR),
    "kilojoule_per_mole": (KILOJOULE_PER_MOLE, _MOLAR),
    "hartree": (HARTREE, _MOLAR), "electronvolt": (ELECTRONVOLT, _MOLAR),
    "radian": (RADIAN, {_ANGLE: 1}), "degree": (DEGREE, {_ANGLE: 1}),
    "elementary_charge": (ELEMENTARY_CHARGE, {_Q: 1}), "dimensionless": (1.0, {}),
    "dalton": (DALTON, {_MASS: 1}), "amu": (DALTON, {_MASS: 1}),
    "picosecond": (PICOSECOND, {_TIME: 1}), "femtosecond": (FEMTOSECOND, {_TIME: 1}),
    "nanosecond": (1e3, {_TIME: 1}), "kelvin": (KELVIN, {_TEMP: 1}),
    "bar": (1.0, {_P: 1}), "atmosphere": (1.01325, {_P: 1}), "pascal": (1e-5, {_P: 1}),
    "kilopascal": (1e-2, {_P: 1}),
    # for experimental densities: mass in daltons (g/mol), volume in nm^3
    "gram": (AVOGADRO * DALTON, {_MASS: 1}), "kilogram": (1e3 * AVOGADRO * DALTON, {_MASS: 1}),
    "centimeter": (1e7, {_L: 1}), "meter": (1e9, {_L: 1}),
    "milliliter": (1e21, {_L: 3}), "liter": (1e24, {_L: 3}),
}
# Other spellings (matched case-insensitively, as are the names above).
ALIASES = {
    "angstroms": "angstrom", "å": "angstrom", "ang": "angstrom", "nanometers": "nanometer",
    "nm": "nanometer", "pm": "picometer", "kilocalories": "kilocalorie", "kcal": "kilocalorie",
    "kilojoules": "kilojoule", "kj": "kilojoule", "mol": "mole", "moles": "mole",
    "kilocalories_per_mole": "kilocalorie_per_mole", "kilojoules_per_mole": "kilojoule_per_mole",
    "ev": "electronvolt", "eh": "hartree", "radians": "radian", "rad": "radian",
    "degrees": "degree", "deg": "degree", "e": "elementary_charge", "da": "dalton",
    "ps": "picosecond", "fs": "femtosecond", "ns": "nanosecond", "k": "kelvin", "atm": "atmosphere",
    "pa": "pascal", "kpa": "kilopascal", "g": "gram", "grams": "gram", "kg": "kilogram",
    "cm": "centimeter", "meters": "meter", "ml": "milliliter", "milliliters": "milliliter",
    "liters": "liter",
}

LENGTH = {_L: 1}
MOLAR_ENERGY = dict(_MOLAR)
ANGLE = {_ANGLE: 1}
CHARGE = {_Q: 1}
TIME = {_TIME: 1}
TEMPERATURE = {_TEMP: 1}
PRESSURE = {_P: 1}
DENSITY = {_MASS: 1, _L: -3}
DIMENSIONLESS: dict[str, int] = {}


def dimension_product(*pairs: tuple[dict[str, int], int]) -> dict[str, int]:
    """Product of dimensions raised to powers, e.g. ((MOLAR_ENERGY, 1), (LENGTH, -2))."""
    out: dict[str, int] = {}
    for dims, power in pairs:
        for k, v in dims.items():
            out[k] = out.get(k, 0) + v * power
    return {k: v for k, v in out.items() if v}


def dimension_name(dims: dict[str, int]) -> str:
    """Readable dimension, e.g. ``energy/(amount*length^2)``; ``dimensionless`` for none."""
    def part(items):
        return "*".join(k if v == 1 else f"{k}^{v}" for k, v in items)

    num = [(k, v) for k, v in sorted(dims.items()) if v > 0]
    den = [(k, -v) for k, v in sorted(dims.items()) if v < 0]
    if not num and not den:
        return "dimensionless"
    text = part(num) or "1"
    if den:
        text += "/" + (part(den) if len(den) == 1 and den[0][1] == 1 else f"({part(den)})")
    return text


def same_dimension(a: dict[str, int], b: dict[str, int], *, ignore=()) -> bool:
    """Equal dimensions, disregarding the base dimensions in ``ignore`` (e.g. "angle": radians
    are dimensionless in SI, so a torsion k in kcal/mol/rad is an energy)."""
    return ({k: v for k, v in a.items() if k not in ignore and v}
            == {k: v for k, v in b.items() if k not in ignore and v})


class UnknownUnitError(InputError):
    """A unit name that the parser does not know (``unit`` holds it)."""

    def __init__(self, message: str, unit: str):
        super().__init__(message)
        self.unit = unit


def units_of(dims: dict[str, int]) -> list[str]:
    """Names and other spellings of the units of dimension ``dims``."""
    names = [n for n, (_, d) in UNITS.items() if d == dims]
    return names + [a for a, n in ALIASES.items() if n in names]


_TOKEN = re.compile(r"\s*(\*\*|\*|/|\(|\)|[^\W\d]\w*|[-+]?\d+)", re.UNICODE)


def parse_unit(expression: str) -> tuple[float, dict[str, int]]:
    """(factor to internal units, dimension) of a unit expression such as
    ``"kilocalorie_per_mole ** 1 * angstrom ** -2"``, ``"kcal/mol/angstrom"`` or ``"fs"``.

    Raises:
        InputError: an unknown unit (the known ones are listed) or a malformed expression.
    """
    factor, dims = _parse_unit(str(expression))
    return factor, dict(dims)


@functools.lru_cache(maxsize=4096)
def _parse_unit(text: str) -> tuple[float, tuple[tuple[str, int], ...]]:
    """``parse_unit`` with the dimension as sorted pairs (cached: files repeat their units)."""
    tokens = _TOKEN.findall(text)
    if not tokens or "".join(tokens).replace(" ", "") != text.replace(" ", "").strip():
        raise InputError(f"cannot parse the unit expression {text!r}")
    pos = 0

    def bad(why: str):
        return InputError(f"cannot parse the unit expression {text!r}: {why}")

    def factor_term() -> tuple[float, dict[str, int]]:
        nonlocal pos
        if pos >= len(tokens):
            raise bad("it ends where a unit name is expected")
        tok = tokens[pos]
        if tok == "(":
            pos += 1
            value = product()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise bad("a bracket is not closed")
            pos += 1
        else:
            name = ALIASES.get(tok.lower(), tok.lower())
            if name not in UNITS:
                raise UnknownUnitError(f"unknown unit {tok!r} in {text!r}; known:"
                                       f" {', '.join(UNITS)} (or {', '.join(sorted(ALIASES))})",
                                       tok)
            value = UNITS[name]
            pos += 1
        if pos < len(tokens) and tokens[pos] == "**":
            if pos + 1 >= len(tokens) or not re.fullmatch(r"[-+]?\d+", tokens[pos + 1]):
                raise bad("'**' must be followed by an integer power")
            power = int(tokens[pos + 1])
            if abs(power) > 12:
                raise bad(f"power {power} is out of range")
            value = (value[0] ** power, dimension_product((value[1], power)))
            pos += 2
        return value

    def product() -> tuple[float, dict[str, int]]:
        nonlocal pos
        value = factor_term()
        while pos < len(tokens) and tokens[pos] in ("*", "/"):
            op = tokens[pos]
            pos += 1
            rhs = factor_term()
            sign = 1 if op == "*" else -1
            value = (value[0] * rhs[0] ** sign, dimension_product((value[1], 1), (rhs[1], sign)))
        return value

    factor, dims = product()
    if pos != len(tokens):
        raise bad(f"unexpected {tokens[pos]!r}")
    return factor, tuple(sorted(dims.items()))


_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity))"
                     r"\s*(?:\*\s*)?(.*?)\s*", re.IGNORECASE)


def parse_quantity(text: str, expected: dict[str, int] | None = None, *,
                   default_unit: str | None = None, what: str = "quantity",
                   ignore=()) -> tuple[float, str]:
    """(value in internal units, unit expression) of ``"<number> [*] <units>"`` such as
    ``"2fs"``, ``"300 K"``, ``"1.52 * angstrom"``; a bare number takes ``default_unit``
    (or is dimensionless).

    Raises:
        InputError: no number, a non-finite number, unknown units, or (with ``expected``)
            units of another dimension than ``expected`` (both named).
    """
    m = _NUMBER.fullmatch(str(text))
    if not m:
        raise InputError(f"cannot read a number at the start of {text!r}")
    value = float(m.group(1))
    if not math.isfinite(value):
        raise InputError(f"{what} {text!r} is not a finite number")
    units = m.group(2) or default_unit or ""
    if not units:
        factor, dims = 1.0, {}
    else:
        try:
            factor, dims = parse_unit(units)
        except UnknownUnitError as exc:
            if expected is None:
                raise
            raise InputError(f"unknown {what} unit {exc.unit!r} in {text!r}; use one of"
                             f" {', '.join(units_of(expected))}") from None
    if expected is not None and not same_dimension(dims, expected, ignore=ignore):
        raise InputError(f"{what} {text!r} has dimension {dimension_name(dims)}, expected"
                         f" {dimension_name(expected)}")
    value *= factor
    if not math.isfinite(value):
        raise InputError(f"{what} {text!r} overflows")
    return value, units
