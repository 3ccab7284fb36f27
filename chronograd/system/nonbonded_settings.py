"""One builder of NonbondedTerm settings, shared by SMIRNOFF ``create_system`` and OpenMM import.

It fixes what OpenMM fixes when a Context is created: the Ewald/PME splitting parameter and grid
(from the cutoff, the error tolerance and the default box, unless given explicitly), LJPME's
dispersion grid, and the Lennard-Jones classes the dispersion correction averages over.
"""

from __future__ import annotations

import numpy as np

from chronograd.potentials.dispersion import lj_classes
from chronograd.potentials.ewald import ewald_parameters, pme_parameters
from chronograd.system.nonbonded import NonbondedTerm


def nonbonded_term(*, name: str, method: str, exception_atoms, sigma, epsilon,
                   cutoff: float, box=None, switch_distance: float | None = None,
                   ewald_error_tolerance: float = 5e-4,
                   reaction_field_dielectric: float = 78.3,
                   use_dispersion_correction: bool = True,
                   exceptions_use_periodic: bool = False,
                   pme: tuple[float, tuple[int, int, int]] | None = None,
                   lj_pme: tuple[float, tuple[int, int, int]] | None = None) -> NonbondedTerm:
    """A NonbondedTerm with OpenMM's settings (every option by keyword).

    Args:
        sigma, epsilon: [N] per-particle values at build time (nm, kJ/mol), for the
            dispersion-correction classes.
        box: default box [3, 3] nm, needed by Ewald, PME and LJPME.
        pme, lj_pme: explicit (alpha 1/nm, grid) as set on an OpenMM NonbondedForce, or None
            to derive them from ``cutoff``, ``ewald_error_tolerance`` and ``box``.
    """
    sigma = np.asarray(sigma, np.float64)
    classes, counts = lj_classes(sigma, epsilon)
    alpha, grid, explicit = 0.0, None, False
    lj_alpha, lj_grid, lj_explicit = 0.0, None, False
    if method in ("PME", "LJPME"):
        if pme is not None:
            (alpha, grid), explicit = pme, True
        else:
            alpha, grid = pme_parameters(cutoff, ewald_error_tolerance, box)
    elif method == "Ewald":
        alpha, grid = ewald_parameters(cutoff, ewald_error_tolerance, box)
    if method == "LJPME":
        if lj_pme is not None:
            (lj_alpha, lj_grid), lj_explicit = lj_pme, True
        else:
            lj_alpha, lj_grid = pme_parameters(cutoff, ewald_error_tolerance, box,
                                               dispersion=True)
    return NonbondedTerm(
        name=name, n_atoms=int(sigma.shape[0]), method=method,
        exception_atoms=np.asarray(exception_atoms, np.int32).reshape(-1, 2),
        lj_class=classes, lj_class_counts=counts, cutoff=float(cutoff),
        switch_distance=switch_distance, reaction_field_dielectric=reaction_field_dielectric,
        ewald_error_tolerance=ewald_error_tolerance, alpha=alpha, grid=grid,
        use_dispersion_correction=use_dispersion_correction,
        exceptions_use_periodic=exceptions_use_periodic, explicit_pme_parameters=explicit,
        lj_alpha=lj_alpha, lj_grid=lj_grid, explicit_lj_pme_parameters=lj_explicit)
