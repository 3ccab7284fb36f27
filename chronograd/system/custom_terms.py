"""Terms whose energy is a written expression: OpenMM's custom forces, CMAP and OBC implicit
solvent, evaluated in JAX so every derivative comes from autodiff.

* :class:`CustomBondedTerm` — CustomBondForce (variable ``r``), CustomAngleForce (``theta``),
  CustomTorsionForce (``theta``, the dihedral in (-pi, pi]) and CustomExternalForce (``x``,
  ``y``, ``z``; ``periodicdistance``). Params: one [M] array per per-item parameter and one
  scalar per global parameter, all differentiable.
* :class:`CustomNonbondedTerm` — CustomNonbondedForce: ``r`` and per-particle parameters
  ``p1``/``p2``, NoCutoff / CutoffNonPeriodic / CutoffPeriodic, switching, exclusions and
  interaction groups. Params: one [N] array per per-particle parameter, scalars for globals.

The expression text is static (part of the compiled program); the expression is parsed once
(``potentials/expressions.py``) and its JAX function cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.potentials.expressions import check_variables, compile_expression
from chronograd.potentials.geometry import angles_of, dihedrals_of, distances_of, gather
from chronograd.potentials.pair import pair_distances, switching_function
from chronograd.space.neighbor_list import in_trace_pairs

# variables each custom bonded kind defines, and its number of atoms per row
BONDED_KINDS = {
    "custom_bond": (("r",), 2),
    "custom_angle": (("theta",), 3),
    "custom_torsion": (("theta",), 4),
    "custom_external": (("x", "y", "z"), 1),
}


def _check_params(where: str, slots: dict, per_item: tuple, global_params: tuple,
                  length: int) -> None:
    from chronograd.system.validate import _values

    for name in per_item:
        _values(where, f"parameter {name!r}", slots.get(name), length)
    for name in global_params:
        v = np.asarray(slots.get(name))
        if v.shape != () or not np.isfinite(v):
            raise InputError(f"{where}: global parameter {name!r} must be one finite number,"
                             f" got {v!r:.60}")


@dataclass(frozen=True, eq=False)
class CustomBondedTerm:
    """``expression`` summed over ``atoms`` rows [M, k]; static: name, kind (a key of
    ``BONDED_KINDS``), expression, per_item and global_params (parameter names), periodic."""

    name: str
    atoms: np.ndarray
    kind: str
    expression: str
    per_item: tuple = ()
    global_params: tuple = ()
    periodic: bool = False
    allows_overlap: ClassVar[bool] = True

    def __post_init__(self):
        if self.kind not in BONDED_KINDS:
            raise InputError(f"term {self.name!r}: unknown custom kind {self.kind!r}")
        names = BONDED_KINDS[self.kind][0] + self.per_item + self.global_params
        check_variables(self.expression, f"term {self.name!r}", names,
                        periodic_distance=self.kind == "custom_external")

    @property
    def report(self) -> str:
        return self.name

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.per_item + self.global_params

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def validate(self, where: str, slots: dict, n: int) -> None:
        from chronograd.system.validate import _indices

        atoms = _indices(where, "atoms", self.atoms, BONDED_KINDS[self.kind][1], n)
        _check_params(where, slots, self.per_item, self.global_params, atoms.shape[0])

    def energy_terms(self, positions, box, params, pairs=None):
        box = box if self.periodic else None
        fn, _ = compile_expression(self.expression, f"term {self.name!r}",
                                   periodic_distance=self.kind == "custom_external")
        atoms = jnp.asarray(self.atoms)
        x, valid = gather(positions, atoms)
        env = {k: jnp.asarray(params[k]) for k in self.param_names}
        if self.kind == "custom_bond":
            env["r"] = distances_of(x, box)
        elif self.kind == "custom_angle":
            env["theta"] = angles_of(x, box)
        elif self.kind == "custom_torsion":
            env["theta"] = dihedrals_of(x, box)
        else:
            env.update(x=x[:, 0, 0], y=x[:, 0, 1], z=x[:, 0, 2], __box__=box)
        e = jnp.broadcast_to(fn(env), valid.shape)
        return {self.report: jnp.sum(jnp.where(valid, e, 0.0))}


jax.tree_util.register_dataclass(
    CustomBondedTerm, data_fields=["atoms"],
    meta_fields=["name", "kind", "expression", "per_item", "global_params", "periodic"])


@dataclass(frozen=True, eq=False)
class CustomNonbondedTerm:
    """CustomNonbondedForce: ``expression`` of ``r`` and ``p1``/``p2`` over ``pairs`` [P, 2]
    (explicit: all non-excluded pairs, or those of the interaction groups) or, for a large
    periodic system, an in-trace neighbor list (``neighbors`` spec, ``exclusions``). Static:
    name, expression, per_particle, global_params, cutoff (None for NoCutoff), periodic,
    switch_distance."""

    name: str
    pairs: np.ndarray
    expression: str
    per_particle: tuple = ()
    global_params: tuple = ()
    cutoff: float | None = None
    periodic: bool = False
    switch_distance: float | None = None
    neighbors: tuple | None = None
    exclusions: tuple = ()
    tables: tuple = ()
    kind: ClassVar[str] = "custom_nonbonded"
    allows_overlap: ClassVar[bool] = False

    def __post_init__(self):
        names = ("r", *[p + s for p in self.per_particle for s in ("1", "2")],
                 *self.global_params)
        check_variables(self.expression, f"term {self.name!r}", names, tables=self.tables)

    @property
    def report(self) -> str:
        return self.name

    @property
    def param_names(self) -> tuple[str, ...]:
        return (self.per_particle + self.global_params
                + tuple(f"table_{t}" for t in self.tables))

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def check_box(self, box, where: str = "") -> None:
        if self.periodic and self.cutoff is not None:
            from chronograd.space.periodic import check_cutoff_fits

            check_cutoff_fits(box, self.cutoff, self.name, where)

    def validate(self, where: str, slots: dict, n: int) -> None:
        from chronograd.system.validate import _indices

        _indices(where, "pairs", self.pairs, 2, n)
        _check_params(where, slots, self.per_particle, self.global_params, n)
        for t in self.tables:
            v = np.asarray(slots[f"table_{t}"])
            if v.dtype.kind not in "fiu" or not np.all(np.isfinite(v)):
                raise InputError(f"{where}: tabulated function {t!r} must hold finite numbers")

    def energy_terms(self, positions, box, params, pairs=None):
        box = box if self.periodic else None
        fn, _ = compile_expression(self.expression, f"term {self.name!r}", tables=self.tables)
        if self.neighbors is None:
            p = jnp.asarray(self.pairs)
            (i, j), overflow = (p[:, 0], p[:, 1]), jnp.asarray(False)
        else:
            (i, j), overflow = in_trace_pairs(positions, box, float(self.cutoff),
                                              self.neighbors, self.exclusions)
        r, valid = pair_distances(positions, box, (i, j))
        if self.cutoff is not None:
            valid = valid & (r < self.cutoff)
        n = positions.shape[0]
        i, j = jnp.minimum(i, n - 1), jnp.minimum(j, n - 1)
        safe_r = jnp.where(valid, r, self.cutoff if self.cutoff is not None else 1.0)
        env = {"r": safe_r}
        for p in self.per_particle:
            v = jnp.asarray(params[p])
            env[p + "1"], env[p + "2"] = v[i], v[j]
        for p in self.global_params:
            env[p] = jnp.asarray(params[p])
        for t in self.tables:
            env[f"table_{t}"] = jnp.asarray(params[f"table_{t}"])
        e = jnp.broadcast_to(fn(env), safe_r.shape)
        if self.switch_distance is not None and self.cutoff is not None:
            e = e * switching_function(safe_r, self.switch_distance, self.cutoff)
        energy = jnp.sum(jnp.where(valid, e, 0.0))
        return {self.report: jnp.where(overflow, jnp.nan, energy)}


jax.tree_util.register_dataclass(
    CustomNonbondedTerm, data_fields=["pairs"],
    meta_fields=["name", "expression", "per_particle", "global_params", "cutoff", "periodic",
                 "switch_distance", "neighbors", "exclusions", "tables"])
