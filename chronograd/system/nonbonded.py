"""The nonbonded term: Lennard-Jones and Coulomb with OpenMM NonbondedForce semantics.

Methods (OpenMM's names): ``NoCutoff``, ``CutoffNonPeriodic`` and ``CutoffPeriodic`` (Coulomb
as reaction field), ``Ewald``, ``PME`` and ``LJPME`` (PME for Coulomb and for the geometric-rule
C6/r^6 dispersion; direct-space LJ pairs shifted to zero at the cutoff, no switch and no
dispersion correction, as in OpenMM). For every method:

* ordinary pairs use Lorentz-Berthelot combination, sigma = (s_i + s_j)/2, eps = sqrt(e_i e_j),
  are truncated at the cutoff (LJ optionally switched, never shifted) and come from the pair
  list passed in (all pairs or a neighbor list: the same code);
* exceptions (scaled 1-4 pairs, and exclusions, which are exceptions with zero parameters)
  are a sparse list with their own charge product, sigma and epsilon, computed without cutoff;
* with Ewald/PME the reciprocal-space interaction of every exception pair is removed and the
  self energy added; with a periodic cutoff the dispersion correction C/V may be added.

Energies are reported as two terms, Lennard-Jones (with LJ exceptions and the dispersion
correction) and Coulomb (everything electrostatic).

Which pairs are evaluated is decided in one place, ``system/pairs.py``: a cutoff (periodic or
not) means a neighbor list, no cutoff means the explicit sparse list ``pairs`` held here as
data. The term is a pytree: index arrays are data (padded with the index N in batches),
method and options are static.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from chronograd.errors import InputError
from chronograd.potentials import ewald, pair
from chronograd.potentials.dispersion import dispersion_coefficient
from chronograd.potentials.geometry import gather
from chronograd.space.periodic import box_volume, minimum_image
from chronograd.system.pairs import explicit_pairs

METHODS = ("NoCutoff", "CutoffNonPeriodic", "CutoffPeriodic", "Ewald", "PME", "LJPME")
PERIODIC_METHODS = ("CutoffPeriodic", "Ewald", "PME", "LJPME")
EWALD_METHODS = ("Ewald", "PME", "LJPME")


@dataclass(frozen=True, eq=False)
class NonbondedTerm:
    """Static description of a NonbondedForce.

    Params: {"charge" [N] e, "sigma" [N] nm, "epsilon" [N] kJ/mol,
    "exception_charge_prod" [E] e^2, "exception_sigma" [E] nm, "exception_epsilon" [E] kJ/mol}.
    ``alpha`` (1/nm) and ``grid`` (PME grid or Ewald k_max) are fixed at build time from the
    default box, as OpenMM fixes them when a Context is created. ``pairs`` [P, 2]: the explicit
    non-excluded pairs of a system without cutoff (built when not given), empty otherwise.
    """

    name: str
    n_atoms: int
    method: str
    exception_atoms: np.ndarray
    lj_class: np.ndarray
    lj_class_counts: np.ndarray
    cutoff: float = 1.0
    switch_distance: float | None = None
    reaction_field_dielectric: float = 78.3
    ewald_error_tolerance: float = 5e-4
    alpha: float = 0.0
    grid: tuple[int, int, int] | None = None
    use_dispersion_correction: bool = True
    exceptions_use_periodic: bool = False
    explicit_pme_parameters: bool = False
    lj_alpha: float = 0.0
    lj_grid: tuple[int, int, int] | None = None
    explicit_lj_pme_parameters: bool = False
    report_names: tuple[str, str] | None = None
    pairs: np.ndarray | None = None
    kind: ClassVar[str] = "nonbonded"
    param_names: ClassVar[tuple[str, ...]] = (
        "charge",
        "sigma",
        "epsilon",
        "exception_charge_prod",
        "exception_sigma",
        "exception_epsilon",
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"nonbonded method {self.method!r} is not one of {METHODS}")
        if self.pairs is None and isinstance(self.exception_atoms, np.ndarray):
            # built once on the host; unflattening a pytree passes arrays and skips this
            pairs = (explicit_pairs(self.n_atoms, self.exception_atoms)
                     if self.method == "NoCutoff" else np.zeros((0, 2), np.int32))
            object.__setattr__(self, "pairs", pairs)

    @property
    def periodic(self) -> bool:
        return self.method in PERIODIC_METHODS

    @property
    def uses_switch(self) -> bool:
        """OpenMM ignores the switching function with LJPME (its pairs are shifted instead)."""
        return self.switch_distance is not None and self.method != "LJPME"

    @property
    def uses_cutoff(self) -> bool:
        return self.method != "NoCutoff"

    def term_names(self) -> tuple[str, ...]:
        if self.report_names is not None:
            return tuple(self.report_names)
        return ("lennard_jones", "coulomb")

    def energy_terms(self, positions, box, params, pairs=None):
        """{"lennard_jones": E, "coulomb": E} in kJ/mol.

        ``pairs``: (i, j) index arrays of broadcastable shapes (padding j == N), e.g. from
        ``NeighborList.pairs()``; None means the explicit list of a system without cutoff.
        """
        e_lj, e_coul = self._energies(positions, box, params, pairs, combined=False)
        names = self.term_names()
        return {names[0]: e_lj, names[1]: e_coul}

    def energy(self, positions, box, params, pairs=None):
        """Total nonbonded energy, kJ/mol: the sum of ``energy_terms``, with one kernel output
        per pair (Lennard-Jones + Coulomb summed in the kernel), so that forces cost one
        projection and one scatter per pair instead of one per reported term (about 1.4x
        faster energy + forces; benchmarks/RESULTS.md, "force-pass")."""
        e_lj, e_coul = self._energies(positions, box, params, pairs, combined=True)
        return e_lj + e_coul

    def _energies(self, positions, box, params, pairs, *, combined: bool):
        """(Lennard-Jones, Coulomb) kJ/mol; with ``combined`` the direct-space pairs are one
        summed kernel output, reported in the first entry."""
        if self.periodic and box is None:
            raise InputError(
                f"nonbonded method {self.method} needs periodic box vectors, but box is None;"
                " pass box=[[ax,0,0],[bx,by,0],[cx,cy,cz]] in nm (e.g. from the PDB CRYST1)"
            )
        b = box if self.periodic else None
        if pairs is None:
            if self.uses_cutoff:
                raise InputError(
                    f"nonbonded method {self.method} evaluates neighbor-list pairs; use"
                    " system.energy_fn(), energy_fn(neighbor_list=True) with"
                    " system.neighbor_list(), or system.energy(positions, box)")
            explicit = jnp.asarray(self.pairs)
            pairs = (explicit[:, 0], explicit[:, 1])
        q, sig, eps = params["charge"], params["sigma"], params["epsilon"]

        n = self.n_atoms
        atom = {"charge": q, "sigma": sig, "epsilon": eps}
        kernel = self._summed_kernel if combined else self._pair_kernel
        sums = pair.pair_sum(kernel, positions, b, pairs, atom,
                             cutoff=self.cutoff if self.uses_cutoff else None)
        if combined:
            e_lj, e_coul = sums[0], jnp.zeros_like(sums[0])
        else:
            e_lj, e_coul = sums[0], sums[1]

        ex = jnp.asarray(self.exception_atoms)
        if ex.shape[0] > 0:
            xe, valid = gather(positions, ex)  # padded rows: valid False, r finite
            d = xe[:, 0] - xe[:, 1]
            d_ex = minimum_image(d, b) if self.exceptions_use_periodic else d
            r_ex = jnp.sqrt(jnp.sum(d_ex * d_ex, axis=-1))
            e_lj = e_lj + jnp.sum(jnp.where(valid, pair.lennard_jones(
                r_ex, params["exception_sigma"], params["exception_epsilon"]), 0.0))
            e_coul = e_coul + jnp.sum(
                jnp.where(valid, pair.coulomb(r_ex, params["exception_charge_prod"]), 0.0))
            if self.method in EWALD_METHODS:
                d_p = minimum_image(d, b)
                r_p = jnp.sqrt(jnp.sum(d_p * d_p, axis=-1))
                ex_c = jnp.minimum(ex, n - 1)
                qq_ex = q[ex_c[:, 0]] * q[ex_c[:, 1]]
                e_coul = e_coul + jnp.sum(jnp.where(
                    valid, pair.coulomb_ewald_exclusion(r_p, qq_ex, self.alpha), 0.0))

        if self.method in EWALD_METHODS:
            e_coul = e_coul + ewald.ewald_self_energy(q, self.alpha)
            reciprocal = (
                ewald.ewald_reciprocal_energy
                if self.method == "Ewald"
                else ewald.pme_reciprocal_energy
            )
            e_coul = e_coul + reciprocal(positions, b, q, self.alpha, self.grid)
        if self.method == "LJPME":
            direct = 0.0 if combined else sums[2]  # (combined: already in sums[0])
            e_lj = e_lj + direct + self._dispersion_pme(positions, b, sig, eps)
        elif self.periodic and self.use_dispersion_correction:
            coeff = dispersion_coefficient(
                sig,
                eps,
                jnp.asarray(self.lj_class),
                jnp.asarray(self.lj_class_counts),
                self.cutoff,
                self.switch_distance,
            )
            e_lj = e_lj + coeff / box_volume(b)
        return e_lj, e_coul

    def _summed_kernel(self, r, a_i, a_j, shared):
        """The sum of ``_pair_kernel``'s outputs, as a one-output kernel."""
        return (sum(self._pair_kernel(r, a_i, a_j, shared)),)

    def _pair_kernel(self, r, a_i, a_j, _shared):
        """(LJ, Coulomb[, LJPME direct dispersion]) of pairs at distance r inside the cutoff."""
        sig = 0.5 * (a_i["sigma"] + a_j["sigma"])
        eps = pair.safe_sqrt(a_i["epsilon"] * a_j["epsilon"])
        lj = pair.lennard_jones(r, sig, eps)
        if self.uses_switch:
            lj = lj * pair.switching_function(r, self.switch_distance, self.cutoff)
        qq = a_i["charge"] * a_j["charge"]
        if self.method == "NoCutoff":
            coul = pair.coulomb(r, qq)
        elif self.method in ("CutoffNonPeriodic", "CutoffPeriodic"):
            k_rf, c_rf = pair.reaction_field_constants(self.cutoff,
                                                       self.reaction_field_dielectric)
            coul = pair.coulomb_reaction_field(r, qq, k_rf, c_rf)
        else:
            coul = pair.coulomb_ewald_direct(r, qq, self.alpha)
        if self.method != "LJPME":
            return lj, coul
        return lj, coul, self._dispersion_direct(r, sig, eps, a_i, a_j)

    def _dispersion_direct(self, r, sig, eps, a_i, a_j):
        """LJPME direct space: pairs inside the cutoff. The reciprocal sum already holds
        -C6 g(r)/r^6 for them; cancel it there (the Lennard-Jones pair term is the interaction
        inside the cutoff). Like OpenMM, shift the whole direct-space pair function (LJ +
        correction) to zero at the cutoff."""
        a = self.lj_alpha
        rc = self.cutoff
        c6_ij = (2.0 * a_i["sigma"]**3 * pair.safe_sqrt(a_i["epsilon"])
                 * 2.0 * a_j["sigma"]**3 * pair.safe_sqrt(a_j["epsilon"]))
        shift = pair.lennard_jones(rc, sig, eps)
        shift = shift + c6_ij * pair.dispersion_long_range(jnp.asarray(rc), a) / rc**6
        return c6_ij * pair.dispersion_long_range(r, a) / r**6 - shift

    def _dispersion_pme(self, positions, box, sig, eps):
        """LJPME: the geometric-rule C6 / r^6 interaction of all pairs and images by PME,
        with the exceptions and self terms made consistent with it (the direct-space pairs
        are ``_dispersion_direct``)."""
        a = self.lj_alpha
        c6 = 2.0 * sig**3 * pair.safe_sqrt(eps)
        e = ewald.dispersion_pme_reciprocal_energy(positions, box, c6, a, self.lj_grid)
        ex = jnp.asarray(self.exception_atoms)
        if ex.shape[0] > 0:
            xe, valid = gather(positions, ex)
            d = minimum_image(xe[:, 0] - xe[:, 1], box)
            r_ex = jnp.sqrt(jnp.sum(d * d, axis=-1))
            ex_c = jnp.minimum(ex, positions.shape[0] - 1)
            c6_ex = c6[ex_c[:, 0]] * c6[ex_c[:, 1]]
            e = e + jnp.sum(jnp.where(
                valid, c6_ex * pair.dispersion_long_range(r_ex, a) / r_ex**6, 0.0))
        return e + a**6 / 12.0 * jnp.sum(c6 * c6)


jax.tree_util.register_dataclass(
    NonbondedTerm,
    data_fields=["exception_atoms", "lj_class", "lj_class_counts", "pairs"],
    meta_fields=["name", "n_atoms", "method", "cutoff", "switch_distance",
                 "reaction_field_dielectric", "ewald_error_tolerance", "alpha", "grid",
                 "use_dispersion_correction", "exceptions_use_periodic",
                 "explicit_pme_parameters", "lj_alpha", "lj_grid",
                 "explicit_lj_pme_parameters", "report_names"],
)
