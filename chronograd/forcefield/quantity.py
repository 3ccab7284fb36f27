"""Quantities as written in SMIRNOFF files: ``"1.52 * angstrom ** 1"``,
``"430.4 * kilocalorie_per_mole ** 1 * angstrom ** -2"``.

A quantity string is a number times a product of unit names raised to integer powers (``*``,
``/``, ``**``). It is converted to chronograd's internal units (nm, kJ/mol, rad, e), and the
original unit expression is kept so that fitted values can be written back in the file's units.
"""

from __future__ import annotations

import math
import re

from chronograd.errors import InputError

# Factor from each unit to internal units (nm, ps, kJ/mol, e, amu, rad; "per mole" is implicit).
UNIT_FACTORS = {
    "angstrom": 0.1,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "picometer": 0.001,
    "kilocalorie": 4.184,
    "kilocalories": 4.184,
    "kilojoule": 1.0,
    "kilojoules": 1.0,
    "mole": 1.0,
    "kilocalorie_per_mole": 4.184,
    "kilocalories_per_mole": 4.184,
    "kilojoule_per_mole": 1.0,
    "kilojoules_per_mole": 1.0,
    "degree": math.pi / 180.0,
    "degrees": math.pi / 180.0,
    "radian": 1.0,
    "radians": 1.0,
    "elementary_charge": 1.0,
    "dimensionless": 1.0,
    "dalton": 1.0,
    "amu": 1.0,
    "picosecond": 1.0,
}

_TOKEN = re.compile(r"\s*(\*\*|\*|/|\(|\)|[A-Za-z_]+|[-+]?\d+)")


def unit_factor(expression: str) -> float:
    """Factor converting a unit expression (e.g. ``mole ** -1 * kilocalorie``) to internal units.

    Raises InputError naming an unknown unit.
    """
    tokens = [t for t in _TOKEN.findall(expression) if t.strip()]
    if "".join(tokens).replace(" ", "") != expression.replace(" ", ""):
        raise InputError(f"cannot parse the unit expression {expression!r}")
    pos = 0

    def factor_term() -> float:
        nonlocal pos
        tok = tokens[pos]
        if tok == "(":
            pos += 1
            value = product()
            pos += 1  # ")"
        elif tok in UNIT_FACTORS:
            value = UNIT_FACTORS[tok]
            pos += 1
        else:
            raise InputError(
                f"unknown unit {tok!r} in {expression!r}; known: {sorted(UNIT_FACTORS)}"
            )
        if pos < len(tokens) and tokens[pos] == "**":
            value = value ** int(tokens[pos + 1])
            pos += 2
        return value

    def product() -> float:
        nonlocal pos
        value = factor_term()
        while pos < len(tokens) and tokens[pos] in ("*", "/"):
            op = tokens[pos]
            pos += 1
            rhs = factor_term()
            value = value * rhs if op == "*" else value / rhs
        return value

    return product()


def parse_quantity(text: str) -> tuple[float, str]:
    """(value in internal units, unit expression) of ``"<number> * <units>"``.

    A bare number is dimensionless. Raises InputError for anything else.
    """
    text = text.strip()
    number, _, units = text.partition("*")
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"cannot read a number at the start of {text!r}") from None
    units = units.strip()
    if not units:
        return value, ""
    return value * unit_factor(units), units


def format_quantity(value: float, units: str) -> str:
    """Write an internal-unit value back in ``units`` (the file's own expression)."""
    if not units:
        return repr(float(value))
    return f"{float(value) / unit_factor(units)!r} * {units}"
