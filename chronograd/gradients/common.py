"""What every estimator shares: the flat view of theta, the selection of trained entries,
the result type, and the plain-words verdicts.

Estimators differentiate with respect to a flat vector ``phi`` of the selected entries of
theta (``wrt``: a boolean mask pytree such as ``ForceField.select(...)``, an array of flat
indices, or None for all). The result maps the gradient back to a pytree like theta.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from chronograd.errors import ChronogradError, InputError


class GradientError(ChronogradError):
    """An estimator cannot give a trustworthy gradient here (memory, overlap, NaN)."""


class GradientResult(NamedTuple):
    """``value``: the observable (time or ensemble average); ``gradient``: d value / d theta
    as a pytree like theta (zeros outside ``wrt``); ``flat``: the same for the selected
    entries only, in the order of ``indices`` (flat positions in theta); ``std_error``: a
    statistical error of ``flat`` where the estimator has one (else None); ``diagnostics``:
    numbers behind the verdict; ``verdict``: one line saying whether to trust it."""

    value: Any
    gradient: Any
    flat: np.ndarray
    indices: np.ndarray
    std_error: np.ndarray | None
    diagnostics: dict
    verdict: str
    estimator: str

    def top(self, n: int = 5, labels=None) -> list[tuple[str, float, float | None]]:
        """The ``n`` entries with the largest |gradient|: (label, gradient, std error)."""
        order = np.argsort(-np.abs(self.flat))[:n]
        out = []
        for k in order:
            i = int(self.indices[k])
            label = labels[i] if labels is not None else f"theta[{i}]"
            err = None if self.std_error is None else float(self.std_error[k])
            out.append((label, float(self.flat[k]), err))
        return out


class Unravel:
    """theta's pytree from its flat vector, as ``ravel_pytree``'s unravel does; equal (and
    hashed) by tree structure, shapes and dtypes, and a pytree without leaves, so a
    ``FlatParams`` can be an argument of a module-level compiled program that every call with
    the same layout shares."""

    def __init__(self, treedef, shapes: tuple, dtypes: tuple):
        self.treedef, self.shapes, self.dtypes = treedef, shapes, dtypes

    @classmethod
    def of(cls, params) -> Unravel:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        return cls(treedef, tuple(np.shape(x) for x in leaves),
                   tuple(jnp.result_type(x) for x in leaves))

    def _key(self):
        return self.treedef, self.shapes, tuple(str(d) for d in self.dtypes)

    def __eq__(self, other):
        return isinstance(other, Unravel) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __call__(self, flat):
        leaves, start = [], 0
        for shape, dtype in zip(self.shapes, self.dtypes, strict=True):
            n = int(np.prod(shape, dtype=np.int64))
            leaves.append(jnp.reshape(flat[start:start + n], shape).astype(dtype))
            start += n
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


jax.tree_util.register_pytree_node(Unravel, lambda u: ((), (u.treedef, u.shapes, u.dtypes)),
                                   lambda aux, _: Unravel(*aux))


class FlatParams(NamedTuple):
    """theta as a flat vector with the selected positions ``indices`` (a pytree: compiled
    programs take it as an argument)."""

    flat: jax.Array
    unravel: Any
    indices: np.ndarray

    def params(self, phi):
        """theta with the selected entries replaced by ``phi``."""
        return self.unravel(self.flat.at[self.indices].set(phi))

    @property
    def phi0(self):
        return self.flat[self.indices]

    def to_pytree(self, values) -> Any:
        full = np.zeros(self.flat.shape[0])
        full[self.indices] = np.asarray(values)
        return self.unravel(jnp.asarray(full))


def flat_params(params, wrt=None) -> FlatParams:
    flat, _ = ravel_pytree(params)
    unravel = Unravel.of(params)
    n = flat.shape[0]
    if wrt is None:
        idx = np.arange(n)
    elif isinstance(wrt, (dict, list, tuple)) and not _is_index_list(wrt):
        mask, _ = ravel_pytree(jax.tree_util.tree_map(lambda m: jnp.asarray(m, bool), wrt))
        if mask.shape[0] != n:
            raise InputError(f"wrt mask has {mask.shape[0]} entries but theta has {n}; build it"
                             " with ForceField.select() from the same force field")
        idx = np.flatnonzero(np.asarray(mask))
    else:
        idx = np.asarray(wrt, np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"wrt indices must lie in [0, {n}); got {idx.min()}..{idx.max()}")
    if idx.size == 0:
        raise InputError("wrt selects no parameters; check the ids/smirks/attributes given")
    return FlatParams(flat, unravel, idx)


def _is_index_list(wrt) -> bool:
    return isinstance(wrt, (list, tuple)) and all(isinstance(i, (int, np.integer)) for i in wrt)


def parameter_labels(params, row_info=None) -> list[str]:
    """One label per flat entry of theta: "handler.attribute[id]" when ``row_info`` (a
    ForceField's) names the rows, else "term.attribute[row]"."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    labels = []
    for path, leaf in leaves:
        keys = [getattr(p, "key", getattr(p, "idx", "?")) for p in path]
        head = ".".join(str(k) for k in keys)
        ids = None
        if row_info is not None and len(keys) == 2:
            info = row_info.get(keys[0], {}).get(keys[1])
            ids = None if info is None else list(info.ids)
        for r in range(int(np.size(leaf))):
            name = ids[r] if ids is not None and r < len(ids) else r
            labels.append(f"{head}[{name}]")
    return labels


def memory_limit_bytes(limit_gb: float | None) -> float:
    """The memory an estimator may plan for: ``limit_gb``, or half the machine's RAM."""
    if limit_gb is not None:
        return float(limit_gb) * 2 ** 30
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2 ** 30


def compiled_memory_bytes(compiled) -> float | None:
    """Temporary + argument + output bytes XLA reports for a compiled function."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - some backends report nothing
        return None
    if m is None:
        return None
    return float(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)


def lyapunov_estimate(norms, dt: float) -> float:
    """Finite-time Lyapunov exponent (1/ps): the slope of log |tangent| over the second half
    of the horizon. Tangents start at zero and first grow linearly from the parameter
    forcing; exponential growth shows as a positive slope there."""
    n = np.asarray(norms, np.float64)
    t = np.arange(1, len(n) + 1) * dt
    half = len(n) // 2
    ok = n[half:] > 0
    if ok.sum() < 3:
        return 0.0
    return float(np.polyfit(t[half:][ok], np.log(n[half:][ok]), 1)[0])


def trajectory_verdict(lyap: float, horizon_ps: float) -> str:
    growth = lyap * horizon_ps
    if not np.isfinite(growth):
        return "untrustworthy: the tangents are not finite"
    if growth < 2.0:
        return (f"trustworthy: tangent growth exp(lambda T) = {np.exp(max(growth, 0)):.3g}"
                f" (lambda = {lyap:.3g}/ps over {horizon_ps:.3g} ps)")
    if growth < 7.0:
        return (f"caution: tangents grow ~{np.exp(growth):.3g}x over the horizon (lambda ="
                f" {lyap:.3g}/ps); the variance of trajectory gradients grows like"
                " exp(2 lambda T): average over seeds or shorten the horizon")
    return (f"untrustworthy: tangents grow ~{np.exp(growth):.3g}x over {horizon_ps:.3g} ps"
            f" (lambda = {lyap:.3g}/ps, chaotic); use adjoint='ensemble' for equilibrium"
            " averages, or a horizon below ~{:.3g} ps".format(2.0 / max(lyap, 1e-12)))


def statistical_verdict(flat, std_error, n_effective: float) -> str:
    g = np.linalg.norm(flat)
    e = np.linalg.norm(std_error)
    rel = e / g if g > 0 else np.inf
    if n_effective < 20:
        return (f"untrustworthy: only {n_effective:.1f} effectively independent samples;"
                " run longer or save frames less often than the correlation time")
    if rel < 0.1:
        return (f"trustworthy: relative standard error {rel:.2g} ({n_effective:.0f}"
                " effective samples)")
    if rel < 0.3:
        return (f"noisy: relative standard error {rel:.2g} ({n_effective:.0f} effective"
                " samples); collect more frames for a fit")
    return (f"untrustworthy: relative standard error {rel:.2g} ({n_effective:.0f} effective"
            " samples); the gradient is mostly noise, collect many more frames")
