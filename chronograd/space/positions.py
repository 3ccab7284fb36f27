"""Host-side checks of coordinates before they reach an energy: finite, and no two particles
at the same position (their 1/r terms would be infinite and every energy NaN)."""

from __future__ import annotations

import numpy as np

from chronograd.errors import InputError

# Particles closer than this (nm) are "at the same position".
COINCIDENT_NM = 1e-4


def check_positions(positions, *, where: str | None = None, skip=(), dim: int = 3,
                    allow_overlap: bool = False) -> np.ndarray:
    """Positions [N, dim] as float64 after checking them; ``skip``: indices not checked for
    coincidence (virtual sites, placed from their parents later); ``allow_overlap``: skip the
    coincidence check (kernels finite at r = 0, e.g. soft spheres).

    Raises:
        InputError: naming the first atom that is not finite, or two atoms at one position.
    """
    from scipy.spatial import cKDTree

    at = f"{where}: " if where else ""
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != dim:
        raise InputError(f"{at}positions must have shape (N, {dim}) in nm, got {pos.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
    if bad.size:
        raise InputError(f"{at}positions of {bad.size} atom(s) are NaN or infinite, first at"
                         f" atom index {int(bad[0])}: {pos[bad[0]].tolist()}")
    real = np.setdiff1d(np.arange(pos.shape[0]), np.asarray(skip, np.int64))
    if real.size < 2 or allow_overlap:
        return pos
    pairs = cKDTree(pos[real]).query_pairs(COINCIDENT_NM, output_type="ndarray")
    if pairs.size:
        i, j = sorted(int(real[k]) for k in pairs[0])
        raise InputError(
            f"{at}atoms {i} and {j} are at the same position"
            f" ({np.round(pos[i], 6).tolist()} nm, closer than {COINCIDENT_NM} nm); their pair"
            " energy would be infinite. Fix the coordinates (a duplicated atom line, or a"
            " molecule placed twice?)")
    return pos
