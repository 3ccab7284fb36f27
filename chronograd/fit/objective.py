"""The fitting objective: weighted targets plus Gaussian priors, in scaled coordinates.

The optimizer sees phi, the trained entries of theta in units of their prior widths:

    theta = theta0 with theta[selected] = theta0[selected] + sigma * phi
    L(phi) = sum_t ||r_t(theta)||^2 + prior_weight * ||phi||^2

so every coordinate has scale ~1 (ForceBalance's rescaling by prior widths) and the prior is a
Gaussian of width sigma around the initial force field. Targets are evaluated one by one in a
fixed order and summed, serially or on Dask workers (``chronograd.fit.parallel``), with the same
result either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.gradients.common import flat_params

# Default prior widths in internal units (nm, kJ/mol, rad), following the OpenFF Sage
# ForceBalance fits: bonds k 100 kcal/mol/A^2, length 0.1 A; angles k 100 kcal/mol/rad^2,
# angle 20 deg; torsions and impropers k 1 kcal/mol; vdW epsilon 0.1 kcal/mol,
# rmin_half / sigma 1 A.
DEFAULT_PRIORS = {
    "Bonds.k": 100 * 4.184 * 100, "Bonds.length": 0.01,
    "Angles.k": 100 * 4.184, "Angles.angle": np.deg2rad(20.0),
    "ProperTorsions.k": 4.184, "ImproperTorsions.k": 4.184,
    "vdW.epsilon": 0.1 * 4.184, "vdW.rmin_half": 0.1, "vdW.sigma": 0.1,
}


def select_parameters(ff, selections: list[dict]):
    """The union of ``ff.select(**s)`` masks, each s with optional ``handler``, ``ids``,
    ``smirks`` and ``attributes``."""
    if not selections:
        raise InputError("no parameters selected for training; give at least one selection"
                         " (ids, smirks, attributes, handler)")
    masks = []
    for s in selections:
        m = ff.select(ids=s.get("ids"), smirks=s.get("smirks"), attributes=s.get("attributes"))
        if s.get("handler") is not None:
            if s["handler"] not in m:
                raise InputError(f"parameter selection names handler {s['handler']!r}; the force"
                                 f" field has {', '.join(m)}")
            m = {h: {a: v & (h == s["handler"]) for a, v in attrs.items()}
                 for h, attrs in m.items()}
        _check_selection(ff, s, m, len(masks))
        masks.append(m)
    return jax.tree_util.tree_map(lambda *ms: np.logical_or.reduce(ms), *masks)


def _check_selection(ff, s: dict, mask, k: int) -> None:
    """Every id a selection names and every attribute it asks for must select something: a
    size asked for as ``sigma`` of a parameter written with ``rmin_half`` (or the reverse)
    would otherwise be left out of the fit without a word."""
    chosen = {(h, a) for h, attrs in mask.items() for a, v in attrs.items() if np.any(v)}
    ids = s.get("ids")
    where = f"parameter selection {k + 1}" + (f" ({', '.join(map(str, ids))})" if ids else "")
    has = {}  # parameter id -> its attributes (within the selection's handler)
    for h, attrs in ff.row_info.items():
        if s.get("handler") is None or h == s["handler"]:
            for a, info in attrs.items():
                for pid in info.ids:
                    has.setdefault(pid, set()).add(f"{h}.{a}")
    for pid in ids or ():
        if pid not in has:
            raise InputError(f"{where}: the force field has no parameter with id {pid!r}")
    for a in s.get("attributes") or ():
        if not any(a == att for _, att in chosen):
            what = "; ".join(f"{pid} has {', '.join(sorted(has[pid]))}" for pid in ids or ()
                             if pid in has)
            hint = (" (SMIRNOFF vdW parameters give their size as sigma or rmin_half, each"
                    " parameter one of them)" if a in ("sigma", "rmin_half") else "")
            raise InputError(f"{where} asks for attribute {a!r}, which none of the selected"
                             f" parameters has{hint}" + (f": {what}" if what else ""))


class Objective:
    """L(phi) for ``targets`` over the selected entries of ``ff``'s theta.

    Args:
        ff: the ForceField.
        targets: built targets (``chronograd.fit.targets``), each with ``residuals(theta)``.
        wrt: bool mask pytree (``select_parameters`` / ``ff.select``) or flat indices.
        priors: {"Handler.attribute": width (internal units)} overriding DEFAULT_PRIORS.
        prior_weight: multiplies ||phi||^2 (0 switches priors off; scaling stays).
        used_only: train only entries that some target's systems use (default True):
            unused entries have zero gradient and would only sit at their prior.
    """

    def __init__(self, ff, targets, wrt, *, priors=None, prior_weight: float = 1.0,
                 used_only: bool = True):
        self.ff, self.targets, self.prior_weight = ff, list(targets), float(prior_weight)
        fp = flat_params(ff.params, wrt)
        labels = _labels(ff)
        idx = fp.indices
        if used_only and self.targets:
            used = np.zeros(fp.flat.shape[0], bool)
            for t in self.targets:
                for rec in t.records:
                    used |= _used_entries(ff, rec.system)
            idx = idx[used[idx]]
            if idx.size == 0:
                raise InputError("none of the selected parameters is used by the targets'"
                                 " molecules; check the selection against the data")
        self.fp = fp._replace(indices=idx)
        self.labels = [labels[i] for i in idx]
        widths = dict(DEFAULT_PRIORS, **(priors or {}))
        sigma = []
        for label in self.labels:
            key = label.split("[")[0]
            if key not in widths:
                raise InputError(f"no prior width for {label}; add \"{key}\" to [priors]")
            sigma.append(widths[key])
        self.sigma = jnp.asarray(sigma, float)
        self.theta0_selected = self.fp.phi0
        self.n = len(idx)
        self._compiled = {}  # (kind, target position) -> jitted function

    # ---- coordinates ----
    def theta(self, phi):
        return self.fp.params(self.theta0_selected + self.sigma * phi)

    def values(self, phi) -> np.ndarray:
        """The trained entries of theta (internal units) at phi."""
        return np.asarray(self.theta0_selected + self.sigma * phi)

    # ---- per-target pieces (what a Dask worker evaluates) ----
    def _fn(self, kind: str, k: int):
        if (kind, k) not in self._compiled:
            t = self.targets[k]

            def loss(p, data=()):
                return t.loss(self.theta(p), *data)

            def residuals(p, data=()):
                return t.residuals(self.theta(p), *data)

            if kind == "value":
                fn = loss
            elif kind == "grad":
                fn = jax.value_and_grad(loss)
            else:
                # Both are vmapped (no per-output loops); forward mode when there are fewer
                # parameters than residual rows, reverse mode otherwise.
                forward = (not getattr(t, "reverse_only", False) and self.n
                           < jax.eval_shape(residuals, jnp.zeros(self.n)).shape[0])
                jac = jax.jacfwd(residuals) if forward else jax.jacrev(residuals)

                def fn(p, data=()):
                    return residuals(p, data), jac(p, data)

            self._compiled[kind, k] = jax.jit(fn)
        return self._compiled[kind, k]

    def prepare(self, k: int, phi) -> tuple:
        """Host-side data target k needs at phi (a sample of frames for condensed-phase
        targets, which may re-simulate here; nothing for QM targets)."""
        t = self.targets[k]
        return (t.prepare(self.theta(jnp.asarray(phi))),) if hasattr(t, "prepare") else ()

    def target_value_and_grad(self, k: int, phi):
        phi = jnp.asarray(phi)
        v, g = self._fn("grad", k)(phi, self.prepare(k, phi))
        return float(v), np.asarray(g)

    def target_value(self, k: int, phi) -> float:
        phi = jnp.asarray(phi)
        return float(self._fn("value", k)(phi, self.prepare(k, phi)))

    def target_residuals_and_jacobian(self, k: int, phi):
        phi = jnp.asarray(phi)
        r, j = self._fn("jac", k)(phi, self.prepare(k, phi))
        return np.asarray(r), np.asarray(j)

    def target_noise(self, k: int, phi) -> float:
        """The standard error of target k's loss at phi (0 for deterministic targets)."""
        t = self.targets[k]
        if not hasattr(t, "loss_noise"):
            return 0.0
        phi = jnp.asarray(phi)
        return float(t.loss_noise(self.theta(phi), *self.prepare(k, phi)))

    def prior(self, phi) -> float:
        phi = np.asarray(phi)
        return self.prior_weight * float(phi @ phi)


def _labels(ff) -> list[str]:
    """Per flat theta entry: "Handler.attribute[id]", plus the file attribute when it differs
    (e.g. "ProperTorsions.k[t9] k2"), in ravel order."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(ff.params)[0]:
        handler, attr = (p.key for p in path)
        info = ff.row_info[handler][attr]
        for r in range(int(np.size(leaf))):
            fa = info.file_attribute[r]
            out.append(f"{handler}.{attr}[{info.ids[r]}]" + (f" {fa}" if fa != attr else ""))
    return out


def _used_entries(ff, system) -> np.ndarray:
    """Flat-theta mask of entries that fill some slot of this system."""
    from jax.flatten_util import ravel_pytree

    from chronograd.system.source import used_theta_rows

    used = np.zeros(ravel_pytree(ff.params)[0].shape[0], bool)
    used[used_theta_rows(system.source)] = True
    return used


class Evaluator:
    """Evaluates an Objective's pieces in order: serially, or via a Dask client."""

    def __init__(self, objective: Objective, client=None, remote=None):
        self.objective, self.client, self.remote = objective, client, remote
        self.n_value = self.n_gradient = self.n_jacobian = 0

    def _map(self, mode, phi):
        phi = np.asarray(phi, float)
        n = len(self.objective.targets)
        if self.client is None:
            fn = {"value": self.objective.target_value,
                  "grad": self.objective.target_value_and_grad,
                  "jac": self.objective.target_residuals_and_jacobian}[mode]
            return [fn(k, phi) for k in range(n)]
        return self.remote(self.client, mode, phi, n)

    def noise(self, phi) -> float:
        """The statistical noise (standard error) of the objective at phi: the sampled
        targets' loss noises in quadrature; 0 when no target is sampled."""
        return float(np.sqrt(sum(self.objective.target_noise(k, phi) ** 2
                                 for k in range(len(self.objective.targets)))))

    def samples(self) -> tuple:
        """Which samples the sampled targets hold now (their simulation counts): a change
        means losses before and after come from different samples."""
        return tuple(getattr(t, "n_simulations", 0) for t in self.objective.targets)

    def value(self, phi):
        self.n_value += 1
        parts = self._map("value", phi)
        return sum(parts) + self.objective.prior(phi), parts

    def value_and_grad(self, phi):
        self.n_gradient += 1
        parts = self._map("grad", phi)
        phi = np.asarray(phi, float)
        value = sum(v for v, _ in parts) + self.objective.prior(phi)
        grad = sum(g for _, g in parts) + 2 * self.objective.prior_weight * phi
        return value, grad, [v for v, _ in parts]

    def residuals_and_jacobian(self, phi):
        """Stacked residuals (targets, then the prior rows) and their Jacobian d r / d phi."""
        self.n_jacobian += 1
        parts = self._map("jac", phi)
        phi = np.asarray(phi, float)
        s = np.sqrt(self.objective.prior_weight)
        r = np.concatenate([p[0] for p in parts] + [s * phi])
        j = np.concatenate([p[1] for p in parts] + [s * np.eye(len(phi))])
        return r, j, [float(p[0] @ p[0]) for p in parts]
