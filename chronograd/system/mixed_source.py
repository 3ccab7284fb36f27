"""Mixed parameter sources: a system whose slots come from several places.

Start from a system's own source (a force field's slot maps, or plain imported values) and
replace chosen slots ``(term, attribute)`` by frozen arrays (e.g. imported from OpenMM; they
carry no gradient) or by any differentiable function of its own parameters (e.g. an ML model
predicting charges). The system's params become a dict ``{"base": ..., name: ...}`` so that
``jax.grad`` returns gradients for the force field and for every function's parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp


@dataclass(frozen=True, eq=False)
class MixedSource:
    """``params = {"base": base params, name: params of function name, ...}``."""

    base: object  # the system's original source, or None for plain slot values
    frozen: dict = field(default_factory=dict)  # (term, attr) -> array
    functions: dict = field(default_factory=dict)  # (term, attr) -> (name, fn)

    def __call__(self, params):
        base = params["base"]
        if self.base is None:
            slots = base
        elif hasattr(self.base, "raw_slots"):
            slots = self.base.raw_slots(base)
        else:
            slots = self.base(base)
        slots = {t: dict(a) for t, a in slots.items()}
        for (term, attr), value in self.frozen.items():
            slots[term][attr] = jax.lax.stop_gradient(jnp.asarray(value))
        for (term, attr), (name, fn) in self.functions.items():
            slots[term][attr] = fn(params[name])
        if hasattr(self.base, "finalize"):
            slots = self.base.finalize(slots)
        return slots

    @property
    def provenance(self) -> dict[tuple[str, str], str]:
        """Where each overridden slot comes from ("frozen" or the function's name); every
        other slot comes from the base source."""
        out = {k: "frozen" for k in self.frozen}
        out.update({k: name for k, (name, _) in self.functions.items()})
        return out


def mix_sources(system, *, frozen: dict | None = None,
                functions: dict[tuple[str, str], tuple[str, Callable, object]] | None = None):
    """A copy of ``system`` with some slots frozen or computed by functions.

    Args:
        frozen: {(term, attribute): array} fixed values (no gradient).
        functions: {(term, attribute): (name, fn, fn_params)}; the slot is ``fn(fn_params)``.

    Returns:
        The new System; its ``params`` are ``{"base": system.params, name: fn_params, ...}``.
    """
    frozen = dict(frozen or {})
    functions = dict(functions or {})
    params = {"base": system.params}
    for (_, (name, _fn, fn_params)) in functions.items():
        if name == "base":
            raise ValueError('"base" is reserved for the system\'s own parameters')
        params[name] = fn_params
    source = MixedSource(system.source, frozen,
                         {k: (name, fn) for k, (name, fn, _) in functions.items()})
    return replace(system, params=params, source=source, _cache={})
