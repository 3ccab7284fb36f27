"""Generalized Born implicit solvent, OBC variant II with the ACE surface-area term (OpenMM's
GBSAOBCForce).

Born radii (Onufriev, Bashford & Case 2004, with the HCT pair integrals and the Tinker
correction for an atom buried inside another): with offset radius rho_i = R_i - 0.009 nm and
scaled radius s_j = (R_j - 0.009) S_j, psi_i = rho_i/2 sum_j H(r_ij, rho_i, s_j) and
B_i = 1 / (1/rho_i - tanh(psi - 0.8 psi^2 + 4.85 psi^3) / R_i). Polar energy
-K (1/eps_in - 1/eps_out) [sum_{i<j} q_i q_j / f_ij + 1/2 sum_i q_i^2 / B_i], with
f = sqrt(r^2 + B_i B_j exp(-r^2 / (4 B_i B_j))) (minus the value at the cutoff for a pair when
a cutoff is used, as OpenMM), and the nonpolar term 4 pi gamma (R_i + 0.14)^2 (R_i / B_i)^6.
Params: "charge" [N] e, "radius" [N] nm, "scale" [N], "surface_area_energy" kJ/mol/nm^2.
Every pair counts (no exclusions), as in OpenMM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError, UnsupportedForceError
from chronograd.potentials.pair import pair_distances
from chronograd.units import ONE_4PI_EPS0

DIELECTRIC_OFFSET = 0.009  # nm
PROBE_RADIUS = 0.14  # nm
OBC_ALPHA, OBC_BETA, OBC_GAMMA = 1.0, 0.8, 4.85
_METHODS = {0: None, 1: "CutoffNonPeriodic", 2: "CutoffPeriodic"}


def _hct_integral(r, rho_i, s_j):
    """The HCT descreening integral of sphere j (scaled radius s_j) seen from atom i."""
    inside = rho_i < r + s_j
    lower = jnp.maximum(rho_i, jnp.abs(r - s_j))
    lower = jnp.where(inside, lower, 1.0)
    upper = jnp.where(inside, r + s_j, 2.0)
    li, ui = 1.0 / lower, 1.0 / upper
    term = (li - ui + 0.25 * r * (ui * ui - li * li) + 0.5 / r * jnp.log(ui / li)
            + 0.25 * s_j * s_j / r * (li * li - ui * ui))
    term = term + jnp.where(rho_i < s_j - r, 2.0 * (1.0 / rho_i - li), 0.0)
    return jnp.where(inside, term, 0.0)


def born_radii(r, i, j, valid, radius, scale, n):
    """Born radii [N] from pair distances r [P] of pairs (i, j) [P] (each pair once)."""
    rho = radius - DIELECTRIC_OFFSET
    s = rho * scale
    rr = jnp.where(valid, r, 1.0)
    hij = jnp.where(valid, _hct_integral(rr, rho[i], s[j]), 0.0)  # i descreened by j
    hji = jnp.where(valid, _hct_integral(rr, rho[j], s[i]), 0.0)
    total = jax.ops.segment_sum(hij, i, n) + jax.ops.segment_sum(hji, j, n)
    psi = 0.5 * rho * total
    return 1.0 / (1.0 / rho - jnp.tanh(OBC_ALPHA * psi - OBC_BETA * psi ** 2
                                       + OBC_GAMMA * psi ** 3) / radius)


@dataclass(frozen=True, eq=False)
class GBSAOBCTerm:
    """OBC2 generalized Born over all ``pairs`` [P, 2]; static: name, solute/solvent
    dielectric, cutoff (None: no cutoff), periodic."""

    name: str
    pairs: np.ndarray
    solute_dielectric: float = 1.0
    solvent_dielectric: float = 78.5
    cutoff: float | None = None
    periodic: bool = False
    kind: ClassVar[str] = "gbsa_obc"
    report: ClassVar[str] = "gbsa_obc"
    allows_overlap: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ("charge", "radius", "scale",
                                              "surface_area_energy")

    def term_names(self) -> tuple[str, ...]:
        return (self.report,)

    def validate(self, where: str, slots: dict, n: int) -> None:
        from chronograd.system.validate import _indices, _values

        _indices(where, "pairs", self.pairs, 2, n)
        for k in ("charge", "radius", "scale"):
            _values(where, k, slots[k], n)
        radius = np.asarray(slots["radius"])
        bad = np.flatnonzero(radius <= DIELECTRIC_OFFSET)
        if bad.size:
            raise InputError(f"{where}: particle {bad[0]} has GB radius {radius[bad[0]]} nm;"
                             f" radii must exceed the dielectric offset {DIELECTRIC_OFFSET} nm")
        g = np.asarray(slots["surface_area_energy"])
        if g.shape != () or not np.isfinite(g):
            raise InputError(f"{where}: surface_area_energy must be one finite number")

    def energy_terms(self, positions, box, params, pairs=None):
        box = box if self.periodic else None
        n = positions.shape[0]
        p = jnp.asarray(self.pairs)
        r, valid = pair_distances(positions, box, (p[:, 0], p[:, 1]))
        if self.cutoff is not None:
            valid = valid & (r <= self.cutoff)
        i, j = jnp.minimum(p[:, 0], n - 1), jnp.minimum(p[:, 1], n - 1)
        q = jnp.asarray(params["charge"])
        radius = jnp.asarray(params["radius"])
        b = born_radii(r, i, j, valid, radius, jnp.asarray(params["scale"]), n)
        pre = -ONE_4PI_EPS0 * (1.0 / self.solute_dielectric - 1.0 / self.solvent_dielectric)
        rr = jnp.where(valid, r, 1.0)
        bb = b[i] * b[j]
        f = jnp.sqrt(rr * rr + bb * jnp.exp(-rr * rr / (4.0 * bb)))
        qq = q[i] * q[j]
        pair = qq / f
        if self.cutoff is not None:
            pair = pair - qq / self.cutoff
        polar = pre * (jnp.sum(jnp.where(valid, pair, 0.0)) + 0.5 * jnp.sum(q * q / b))
        area = 4.0 * np.pi * jnp.asarray(params["surface_area_energy"])
        nonpolar = jnp.sum(jnp.where(b > 0, area * (radius + PROBE_RADIUS) ** 2
                                     * (radius / b) ** 6, 0.0))
        return {self.report: polar + nonpolar}

    def to_openmm(self, p):
        import openmm

        f = openmm.GBSAOBCForce()
        f.setSoluteDielectric(float(self.solute_dielectric))
        f.setSolventDielectric(float(self.solvent_dielectric))
        f.setSurfaceAreaEnergy(float(p["surface_area_energy"]))
        method = 0 if self.cutoff is None else 2 if self.periodic else 1
        f.setNonbondedMethod(method)
        if self.cutoff is not None:
            f.setCutoffDistance(float(self.cutoff))
        for q, rad, s in zip(p["charge"], p["radius"], p["scale"], strict=True):
            f.addParticle(float(q), float(rad), float(s))
        return f


jax.tree_util.register_dataclass(
    GBSAOBCTerm, data_fields=["pairs"],
    meta_fields=["name", "solute_dielectric", "solvent_dielectric", "cutoff", "periodic"])


def import_gbsa_obc(force, index: int, name: str, n: int, box):
    """(GBSAOBCTerm, params) of an ``openmm.GBSAOBCForce`` (all pairs explicit)."""
    from chronograd.interop.openmm import _value
    from chronograd.system.pair_terms import explicit_particle_pairs
    from chronograd.system.pairs import MAX_EXPLICIT_PAIR_PARTICLES

    if n > MAX_EXPLICIT_PAIR_PARTICLES:
        raise UnsupportedForceError(
            f"GBSAOBCForce (force index {index}): {n} particles exceed the"
            f" {MAX_EXPLICIT_PAIR_PARTICLES} that implicit solvent is evaluated for (all pairs)")
    method = _METHODS[force.getNonbondedMethod()]
    cutoff = None if method is None else _value(force.getCutoffDistance())
    params = {"charge": np.zeros(n), "radius": np.zeros(n), "scale": np.zeros(n)}
    for a in range(n):
        q, rad, s = force.getParticleParameters(a)
        params["charge"][a], params["radius"][a], params["scale"][a] = (
            _value(q), _value(rad), float(s))
    params["surface_area_energy"] = np.asarray(_value(force.getSurfaceAreaEnergy()))
    term = GBSAOBCTerm(name, explicit_particle_pairs(n), float(force.getSoluteDielectric()),
                       float(force.getSolventDielectric()), cutoff,
                       method == "CutoffPeriodic")
    return term, params
