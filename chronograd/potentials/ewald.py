"""Ewald summation and smooth particle-mesh Ewald (SPME) for Coulomb interactions.

The parameter choices reproduce OpenMM's (NonbondedForceImpl::calcEwaldParameters and
calcPMEParameters), so that energies are comparable at the same ``ewaldErrorTolerance``:

    alpha = sqrt(-ln(2 tol)) / r_c
    PME grid  K_d = max(6, ceil(2 alpha L_d / (3 tol^(1/5))))
    Ewald k_max from OpenMM's error estimate, made odd.

SPME follows Essmann et al., J. Chem. Phys. 103, 8577 (1995), doi:10.1063/1.470117, with
B-splines of order 5 (OpenMM's choice) and OpenMM's treatment of vanishing B-spline moduli.
Forces come from autodiff of the energy.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erfc

from chronograd.space.periodic import box_volume
from chronograd.units import ONE_4PI_EPS0

PME_ORDER = 5


def ewald_alpha(cutoff: float, tolerance: float) -> float:
    """OpenMM's Ewald splitting parameter alpha (1/nm) for a cutoff and error tolerance."""
    return math.sqrt(-math.log(2.0 * tolerance)) / cutoff


def _ewald_error(k: int, width: float, alpha: float, tolerance: float) -> float:
    t = k * math.pi / (width * alpha)
    return tolerance - 0.05 * math.sqrt(width * alpha) * k * math.exp(-t * t)


def _find_zero(width: float, alpha: float, tolerance: float, guess: int = 10) -> int:
    k = guess
    value = _ewald_error(k, width, alpha, tolerance)
    if value > 0.0:
        while value > 0.0 and k > 0:
            k -= 1
            value = _ewald_error(k, width, alpha, tolerance)
        return k + 1
    while value < 0.0:
        k += 1
        value = _ewald_error(k, width, alpha, tolerance)
    return k


def ewald_parameters(cutoff: float, tolerance: float, box) -> tuple[float, tuple[int, int, int]]:
    """(alpha, (kmax_x, kmax_y, kmax_z)) as OpenMM chooses them for plain Ewald."""
    alpha = ewald_alpha(cutoff, tolerance)
    kmax = []
    for d in range(3):
        k = _find_zero(float(box[d][d]), alpha, tolerance)
        kmax.append(k + 1 if k % 2 == 0 else k)
    return alpha, tuple(kmax)


def pme_parameters(
    cutoff: float, tolerance: float, box, *, dispersion: bool = False
) -> tuple[float, tuple[int, int, int]]:
    """(alpha, (K_x, K_y, K_z)) as OpenMM chooses them for PME (or for LJPME's dispersion
    grid, which is half as fine)."""
    alpha = ewald_alpha(cutoff, tolerance)
    scale = 1.0 if dispersion else 2.0
    grid = tuple(
        max(6, int(math.ceil(scale * alpha * float(box[d][d]) / (3.0 * tolerance**0.2))))
        for d in range(3)
    )
    return alpha, grid


def fft_dimension(minimum: int) -> int:
    """The smallest grid size >= ``minimum`` that FFTs run fast on, by the rule of OpenMM's CPU
    platform (``CpuCalcPmeReciprocalForceKernel::findFFTDimension``, OpenMM 8): no prime factor
    above 7 except at most one 11.

    A prime size such as 41 or 89 costs 2.5x and 6x the FFT of 42 or 90 (benchmarks/RESULTS.md,
    "scaling-levers"); a larger grid only lowers the PME discretization error.
    """
    size = max(int(minimum), 1)
    while True:
        rest = size
        for factor in (2, 3, 5, 7):
            while rest % factor == 0:
                rest //= factor
        if rest in (1, 11):
            return size
        size += 1


def fft_grid(grid) -> tuple[int, int, int]:
    """``grid`` with every axis rounded up by ``fft_dimension``: the grid OpenMM's CPU platform
    runs when it is asked for ``grid``."""
    return tuple(fft_dimension(k) for k in grid)


def ewald_self_energy(charges, alpha):
    """-K alpha/sqrt(pi) sum q^2, kJ/mol."""
    return -ONE_4PI_EPS0 * alpha / math.sqrt(math.pi) * jnp.sum(charges * charges)


def _structure_factor_weights(box, alpha, m):
    """exp(-pi^2 |m|^2 / alpha^2) / |m|^2 for integer index vectors m [..., 3] (0 at m = 0)."""
    recip = jnp.linalg.inv(box)  # columns are the reciprocal vectors
    mvec = jnp.einsum("dk,...k->...d", recip, m)
    m2 = jnp.sum(mvec * mvec, axis=-1)
    zero = m2 == 0
    m2_safe = jnp.where(zero, 1.0, m2)
    return jnp.where(zero, 0.0, jnp.exp(-(math.pi**2) * m2_safe / alpha**2) / m2_safe)


def ewald_reciprocal_energy(positions, box, charges, alpha, kmax):
    """Reciprocal-space Ewald sum over integer vectors with |m_d| < kmax_d, kJ/mol.

    E = K / (2 pi V) sum_{m != 0} exp(-pi^2 m^2 / alpha^2) / m^2 |S(m)|^2,
    S(m) = sum_j q_j exp(2 pi i m . s_j) with s the fractional coordinates.
    """
    s = positions @ jnp.linalg.inv(box)
    factors = []
    for d in range(3):
        m = jnp.arange(-kmax[d] + 1, kmax[d])
        factors.append(jnp.exp(2j * math.pi * s[:, d : d + 1] * m[None, :]))
    sf = jnp.einsum("j,ja,jb,jc->abc", charges.astype(factors[0].dtype), *factors, optimize=True)
    grids = jnp.meshgrid(*[jnp.arange(-k + 1, k) for k in kmax], indexing="ij")
    weights = _structure_factor_weights(box, alpha, jnp.stack(grids, axis=-1).astype(s.dtype))
    energy = jnp.sum(weights * (sf.real**2 + sf.imag**2))
    return ONE_4PI_EPS0 * energy / (2.0 * math.pi * box_volume(box))


def _cardinal_bspline(x: float, order: int) -> float:
    """Cardinal B-spline M_order(x), supported on [0, order] (host-side, for the moduli)."""
    if order == 2:
        return max(0.0, 1.0 - abs(x - 1.0))
    return (x * _cardinal_bspline(x, order - 1)
            + (order - x) * _cardinal_bspline(x - 1.0, order - 1)) / (order - 1)


def bspline_weights(frac, order: int = PME_ORDER):
    """SPME weights [..., order] for grid points base + j given the fractional offset
    ``frac`` in [0, 1): w_j = M_order(frac + order - 1 - j).

    Built by the polynomial recursion of Essmann et al. so that the derivative is exact
    everywhere in the cell, including at knots (clip/abs forms give half-derivatives there).
    """
    data = [1.0 - frac, frac]
    for k in range(3, order + 1):
        div = 1.0 / (k - 1)
        new = [None] * k
        new[k - 1] = div * frac * data[k - 2]
        for l in range(1, k - 1):
            new[k - l - 1] = div * ((frac + l) * data[k - l - 2] + (k - l - frac) * data[k - l - 1])
        new[0] = div * (1.0 - frac) * data[0]
        data = new
    return jnp.stack(data, axis=-1)


def bspline_moduli(grid_size: int, order: int = PME_ORDER) -> np.ndarray:
    """|b(m)|^-2 denominators of SPME for one axis, with OpenMM's fix for vanishing values."""
    values = np.zeros(grid_size)
    for i in range(1, order + 1):
        if i < grid_size:
            values[i] = _cardinal_bspline(float(i), order)
    k = np.arange(grid_size)
    arg = 2.0 * np.pi * np.outer(k, np.arange(grid_size)) / grid_size
    moduli = (values * np.cos(arg)).sum(1) ** 2 + (values * np.sin(arg)).sum(1) ** 2
    fixed = moduli.copy()
    for i in range(grid_size):
        if moduli[i] < 1.0e-7:
            fixed[i] = 0.5 * (moduli[(i - 1) % grid_size] + moduli[(i + 1) % grid_size])
    return fixed


def spread_on_grid(positions, box, weights, grid, order: int = PME_ORDER):
    """Per-atom ``weights`` (charges or C6 factors) spread on the periodic PME grid [K_x, K_y,
    K_z] with B-splines of ``order``: Q = sum_n w_n M(u_nx - k_x) M(u_ny - k_y) M(u_nz - k_z).

    Each atom adds one order^3 window at its base grid point: one windowed scatter into a grid
    padded by order - 1 on each axis, whose overhang is then folded back onto the start (the
    periodic wrap). About 3x faster on CPU than scattering order^3 single points per atom
    (benchmarks/RESULTS.md, "force-pass"); its derivative is the matching windowed gather.
    """
    s = positions @ jnp.linalg.inv(box)
    sizes = jnp.asarray(grid)
    u = (s - jnp.floor(s)) * sizes.astype(s.dtype)
    base = jnp.floor(u)
    w = bspline_weights(u - base, order)  # [N, 3, order]
    start = base.astype(jnp.int32) % sizes  # u can round up to K exactly: that is point 0
    values = (
        weights[:, None, None, None]
        * w[:, 0, :, None, None]
        * w[:, 1, None, :, None]
        * w[:, 2, None, None, :]
    )
    extra = order - 1
    padded = jnp.zeros(tuple(k + extra for k in grid), dtype=s.dtype)
    numbers = lax.ScatterDimensionNumbers(update_window_dims=(1, 2, 3), inserted_window_dims=(),
                                          scatter_dims_to_operand_dims=(0, 1, 2))
    q = lax.scatter_add(padded, start, values.astype(s.dtype), numbers,
                        mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
    for axis, k in enumerate(grid):
        q = _fold_periodic(q, axis, k)
    return q


def _fold_periodic(q, axis: int, k: int):
    """The first ``k`` entries of ``q`` along ``axis`` with the rest added back periodically
    (entry k + i onto i), also when the overhang is longer than k."""
    q = jnp.moveaxis(q, axis, 0)
    out = q[:k]
    for offset in range(k, q.shape[0], k):
        piece = q[offset:offset + k]
        out = out.at[:piece.shape[0]].add(piece)
    return jnp.moveaxis(out, 0, axis)


def _spread_and_transform(positions, box, weights, grid, order):
    """Per-atom ``weights`` spread on the PME grid, transformed: (|F(Q)|^2 on the rfft half
    grid, integer frequencies m [Kx, Ky, Kz//2+1, 3], and the per-frequency factor: half-grid
    multiplicity / B-spline moduli). Static parts are NumPy.
    """
    q_grid = spread_on_grid(positions, box, weights, grid, order)
    dtype = q_grid.dtype
    fq = jnp.fft.rfftn(q_grid)
    kx, ky, kz = grid
    mz = np.arange(kz // 2 + 1, dtype=np.float64)
    if kz % 2 == 0:
        mz[-1] = -kz // 2  # OpenMM treats the Nyquist index as a negative frequency
    m = np.stack(
        np.meshgrid(np.fft.fftfreq(kx, 1.0 / kx), np.fft.fftfreq(ky, 1.0 / ky), mz, indexing="ij"),
        axis=-1,
    )
    moduli = (
        bspline_moduli(kx, order)[:, None, None]
        * bspline_moduli(ky, order)[None, :, None]
        * bspline_moduli(kz, order)[None, None, : kz // 2 + 1]
    )
    multiplicity = np.full(kz // 2 + 1, 2.0)
    multiplicity[0] = 1.0
    if kz % 2 == 0:
        multiplicity[-1] = 1.0
    factor = jnp.asarray(multiplicity[None, None, :] / moduli, dtype=dtype)
    return fq.real**2 + fq.imag**2, jnp.asarray(m, dtype=dtype), factor


def pme_reciprocal_energy(positions, box, charges, alpha, grid, order: int = PME_ORDER):
    """Smooth-PME reciprocal-space Coulomb energy, kJ/mol.

    Args:
        positions: [N, 3] nm.  box: [3, 3] reduced box vectors, nm.  charges: [N] e.
        alpha: Ewald splitting parameter, 1/nm.  grid: static (K_x, K_y, K_z).
    """
    power, m, factor = _spread_and_transform(positions, box, charges, grid, order)
    weights = _structure_factor_weights(box, alpha, m) * factor
    return ONE_4PI_EPS0 * jnp.sum(weights * power) / (2.0 * math.pi * box_volume(box))


def dispersion_pme_reciprocal_energy(positions, box, c6, alpha, grid, order: int = PME_ORDER):
    """Smooth-PME reciprocal-space energy of -sum_{i<j} C6_ij g(r_ij) / r_ij^6 (all pairs and
    images, m = 0 included), where C6_ij = c6_i c6_j and g(r) = 1 - exp(-a^2 r^2)(1 + a^2 r^2
    + a^4 r^4 / 2) is the long-range part: LJPME, Essmann et al. (1995); Wennberg et al.,
    J. Chem. Theory Comput. 9, 3527 (2013), doi:10.1021/ct400140n. kJ/mol.

    Args:
        c6: [N] per-atom factors, c6_i = 2 sigma_i^3 sqrt(epsilon_i) (kJ/mol)^1/2 nm^3.
    """
    power, m, factor = _spread_and_transform(positions, box, c6, grid, order)
    mvec = jnp.einsum("dk,...k->...d", jnp.linalg.inv(box), m)
    m2 = jnp.sum(mvec * mvec, axis=-1)
    nonzero = m2 > 0
    mlen = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, m2, 1.0)), 0.0)
    b = math.pi * mlen / alpha
    kernel = (
        2.0 * math.pi**3 * math.sqrt(math.pi) * erfc(b) * mlen**3
        + jnp.exp(-b * b) * (alpha**3 - 2.0 * alpha * math.pi**2 * m2)
    )
    prefactor = -2.0 * math.pi * math.sqrt(math.pi) / (6.0 * box_volume(box))
    return 0.5 * prefactor * jnp.sum(kernel * factor * power)
