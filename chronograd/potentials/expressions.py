"""OpenMM (Lepton) energy expressions as JAX functions, through sympy.

An OpenMM custom force holds its energy as text: ``"D*(1-exp(-a*(r-r0)))^2"``, optionally
followed by intermediate definitions separated by ``;`` (``"4*eps*(x^12-x^6); x=sigma/r;
sigma=0.5*(sigma1+sigma2)"``; a definition may use the ones after it). :func:`parse` turns the
text into one sympy expression in the force's variables (``r``, ``theta``, ``x``/``y``/``z``,
per-item and global parameters), and :func:`compile_expression` turns that into a JAX function
of a dict of arrays, so energies, forces, Hessians and parameter gradients come from autodiff.

Nothing is executed from the text: it is split into tokens that must be numbers, operators,
parentheses, commas or names; every name is renamed (``v_`` + variable, ``f_`` + function)
before sympy reads it, and a function call is allowed only for Lepton's built-ins. An unknown
function (a tabulated function, or a typo) raises :class:`UnsupportedExpressionError` naming
it and the force.
"""

from __future__ import annotations

import functools
import re

import jax.numpy as jnp
import sympy
from jax import lax
from jax.scipy.special import erf, erfc
from sympy.parsing.sympy_parser import convert_xor, parse_expr, standard_transformations

from chronograd.errors import UnsupportedForceError


class UnsupportedExpressionError(UnsupportedForceError):
    """An expression uses a function or syntax chronograd cannot translate."""


_STEP = sympy.Function("step")
_DELTA = sympy.Function("delta")
_SELECT = sympy.Function("select")
_PERIODIC_DISTANCE = sympy.Function("periodicdistance")

# Lepton's built-in functions (openmm docs, "Writing Custom Expressions") as sympy callables.
_FUNCTIONS = {
    "sqrt": sympy.sqrt, "exp": sympy.exp, "log": sympy.log,
    "sin": sympy.sin, "cos": sympy.cos, "sec": sympy.sec, "csc": sympy.csc, "tan": sympy.tan,
    "cot": sympy.cot, "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "atan2": sympy.atan2, "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "erf": sympy.erf, "erfc": sympy.erfc, "step": _STEP, "delta": _DELTA,
    "square": lambda x: x ** 2, "cube": lambda x: x ** 3, "recip": lambda x: 1 / x,
    "min": sympy.Min, "max": sympy.Max, "abs": sympy.Abs, "floor": sympy.floor,
    "ceil": sympy.ceiling, "select": _SELECT,
}
_ARITY = {"atan2": 2, "min": 2, "max": 2, "select": 3, "periodicdistance": 6}

# what sympy's number transformation writes into the code it evaluates (nothing else is there)
_NUMBERS = {"Float": sympy.Float, "Integer": sympy.Integer, "Rational": sympy.Rational}
_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>[-+*/^(),]))")


def _tokens(text: str, where: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            raise UnsupportedExpressionError(
                f"{where}: cannot read {bad!r} at character {pos + 1} of {text.strip()!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _to_sympy(text: str, where: str, functions: dict):
    """One ``;``-free Lepton expression as a sympy expression (names renamed, then read)."""
    toks = _tokens(text, where)
    if not toks:
        raise UnsupportedExpressionError(f"{where}: empty expression")
    local, parts = {}, []
    for k, (kind, tok) in enumerate(toks):
        if kind == "name":
            call = k + 1 < len(toks) and toks[k + 1] == ("op", "(")
            if call:
                if tok not in functions:
                    raise UnsupportedExpressionError(
                        f"{where}: the function {tok!r} is not supported (tabulated and"
                        f" user-defined functions are not translated); supported:"
                        f" {', '.join(sorted(functions))}")
                local[f"f_{tok}"] = functions[tok]
                parts.append(f"f_{tok}")
            else:
                local[f"v_{tok}"] = sympy.Symbol(tok, real=True)
                parts.append(f"v_{tok}")
        else:
            parts.append(tok)
    try:
        return parse_expr(" ".join(parts), local_dict=local, global_dict=dict(_NUMBERS),
                          transformations=(*standard_transformations, convert_xor))
    except (SyntaxError, TypeError, ValueError, NameError) as exc:
        raise UnsupportedExpressionError(f"{where}: cannot parse {text.strip()!r} ({exc})")\
            from None


def parse(expression: str, where: str = "expression", *, periodic_distance: bool = False,
          tables: tuple = ()):
    """The energy of a Lepton ``expression`` as one sympy expression; intermediate definitions
    are substituted (cycles are named). ``periodic_distance`` allows CustomExternalForce's
    ``periodicdistance(x, y, z, x0, y0, z0)``; ``tables`` names discrete tabulated functions
    (OpenMM's Discrete1D/2D/3DFunction), called like functions and read from the environment
    (``"table_" + name``, indices rounded to the nearest integer)."""
    functions = dict(_FUNCTIONS)
    functions.update({name: sympy.Function(f"table_{name}") for name in tables})
    if periodic_distance:
        functions["periodicdistance"] = _PERIODIC_DISTANCE
    pieces = [p for p in expression.split(";") if p.strip()]
    if not pieces:
        raise UnsupportedExpressionError(f"{where}: empty expression")
    definitions = {}
    for piece in pieces[1:]:
        name, eq, body = piece.partition("=")
        name = name.strip()
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UnsupportedExpressionError(
                f"{where}: {piece.strip()!r} is not a definition 'name = expression'")
        definitions[name] = _to_sympy(body, f"{where} (definition of {name})", functions)
    energy = _to_sympy(pieces[0], where, functions)
    for _ in range(len(definitions) + 1):
        names = {s.name for s in energy.free_symbols} & set(definitions)
        if not names:
            return energy
        energy = energy.subs({sympy.Symbol(n, real=True): definitions[n] for n in names})
    raise UnsupportedExpressionError(
        f"{where}: the definitions of {sorted(names)} refer to each other in a cycle")


def variables(expr) -> set[str]:
    """Names of the free variables of a parsed expression."""
    return {s.name for s in expr.free_symbols}


def _step(x):
    return jnp.where(x >= 0, 1.0, 0.0)


def _evaluate(e, env: dict):
    """Evaluate sympy expression ``e`` with JAX, variables from ``env`` (name -> array)."""
    if e.is_Symbol:
        return env[e.name]
    if e.is_Number:
        return float(e)
    args = [_evaluate(a, env) for a in e.args]
    if e.is_Add:
        return functools.reduce(lambda a, b: a + b, args)
    if e.is_Mul:
        return functools.reduce(lambda a, b: a * b, args)
    if e.is_Pow:
        base, exponent = e.args
        if exponent.is_Integer:
            return lax.integer_pow(jnp.asarray(args[0], jnp.result_type(float)), int(exponent))
        if exponent == sympy.Rational(1, 2):
            return jnp.sqrt(args[0])
        if exponent == sympy.Rational(-1, 2):
            return lax.rsqrt(jnp.asarray(args[0], jnp.result_type(float)))
        return jnp.power(args[0], args[1])
    f = e.func
    if f in (sympy.Min, sympy.Max):
        op = jnp.minimum if f is sympy.Min else jnp.maximum
        return functools.reduce(op, args)
    if f is _STEP:
        return _step(args[0])
    if f is _DELTA:
        return jnp.where(args[0] == 0, 1.0, 0.0)
    if f is _SELECT:
        return jnp.where(args[0] != 0, args[1], args[2])
    if str(f).startswith("table_") and str(f) in env:
        table = env[str(f)]
        idx = tuple(jnp.clip(jnp.round(a).astype(jnp.int32), 0, table.shape[k] - 1)
                    for k, a in enumerate(jnp.broadcast_arrays(*args)))
        return table[idx]
    if f is _PERIODIC_DISTANCE:
        from chronograd.space.periodic import minimum_image, safe_norm

        d = jnp.stack(jnp.broadcast_arrays(*[args[k] - args[k + 3] for k in range(3)]), -1)
        return safe_norm(minimum_image(d, env.get("__box__")))
    table = {
        sympy.exp: jnp.exp, sympy.log: jnp.log, sympy.sin: jnp.sin, sympy.cos: jnp.cos,
        sympy.tan: jnp.tan, sympy.sec: lambda x: 1 / jnp.cos(x),
        sympy.csc: lambda x: 1 / jnp.sin(x), sympy.cot: lambda x: 1 / jnp.tan(x),
        sympy.asin: jnp.arcsin, sympy.acos: jnp.arccos, sympy.atan: jnp.arctan,
        sympy.atan2: jnp.arctan2, sympy.sinh: jnp.sinh, sympy.cosh: jnp.cosh,
        sympy.tanh: jnp.tanh, sympy.erf: erf, sympy.erfc: erfc, sympy.Abs: jnp.abs,
        sympy.floor: jnp.floor, sympy.ceiling: jnp.ceil, sympy.sign: jnp.sign,
        sympy.Heaviside: _step,
    }
    if f in table:
        return table[f](*args)
    raise UnsupportedExpressionError(f"no JAX translation for {f} in {e}")  # pragma: no cover


@functools.lru_cache(maxsize=256)
def compile_expression(expression: str, where: str = "expression", *,
                       periodic_distance: bool = False, tables: tuple = ()):
    """(function of a dict name -> array, the names it reads). The dict may also hold the box
    under ``"__box__"`` for ``periodicdistance`` and each table under ``"table_" + name``.
    Cached per expression text."""
    expr = parse(expression, where, periodic_distance=periodic_distance, tables=tables)
    names = frozenset(variables(expr))

    def fn(env):
        value = _evaluate(expr, env)
        return value

    return fn, names


def check_variables(expression: str, where: str, known, *, periodic_distance: bool = False,
                    tables: tuple = ()):
    """Raise naming the first variable of ``expression`` that is not in ``known``."""
    _, names = compile_expression(expression, where, periodic_distance=periodic_distance,
                                  tables=tables)
    unknown = sorted(names - set(known))
    if unknown:
        raise UnsupportedExpressionError(
            f"{where}: the expression uses {unknown[0]!r}, which is neither a variable of the"
            f" force nor one of its parameters (known: {', '.join(sorted(known))})")
    return names
