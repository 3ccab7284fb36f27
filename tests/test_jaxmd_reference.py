"""Pair potentials against JAX MD (0.2.29, a test-only reference): the same configurations,
species tables and cutoff settings give the same energies and forces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_md import energy as jmd_energy
from jax_md import partition, quantity, smap, space

import chronograd as cg
from chronograd.potentials.kernels import PAIR_KERNELS, smoothed

pytestmark = pytest.mark.runtime_bound  # run time dominates: optimized programs (conftest)

jax.config.update("jax_enable_x64", True)

SPECIES = np.array([0, 1] * 10)
TABLES = {
    "lennard_jones": {"sigma": np.array([[1.0, 1.2], [1.2, 1.4]]),
                      "epsilon": np.array([[1.0, 0.7], [0.7, 0.5]])},
    "soft_sphere": {"sigma": np.array([[1.0, 1.2], [1.2, 1.4]]),
                    "epsilon": np.array([[1.0, 2.0], [2.0, 1.5]]), "alpha": 2.5},
    "morse": {"sigma": np.array([[1.0, 1.1], [1.1, 1.3]]),
              "epsilon": np.array([[5.0, 3.0], [3.0, 4.0]]),
              "alpha": np.array([[5.0, 4.0], [4.0, 6.0]])},
}
JAXMD = {"lennard_jones": jmd_energy.lennard_jones, "soft_sphere": jmd_energy.soft_sphere,
         "morse": jmd_energy.morse}


def _config(dim, side, n=20, seed=0):
    """Random positions without close contacts (r > 0.8)."""
    rng = np.random.default_rng(seed)
    x = []
    while len(x) < n:
        p = rng.uniform(0, side, dim)
        if all(np.linalg.norm(p - q) > 0.8 for q in x):
            x.append(p)
    return np.array(x)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kernel", sorted(TABLES))
def test_all_pairs_energies_and_forces_equal_jax_md(kernel, dim):
    x = _config(dim, 4.0, seed=dim)
    params = TABLES[kernel]
    system = cg.particle_system(x, SPECIES, kernel=kernel, params=params)
    displacement, _ = space.free()
    ref_params = {k: jnp.asarray(v) for k, v in params.items()}
    ref = smap.pair(JAXMD[kernel], space.metric(displacement), species=jnp.asarray(SPECIES),
                    **ref_params)
    e, f = system.energy_and_forces(x)
    xj = jnp.asarray(x)
    assert e == pytest.approx(float(ref(xj)), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(f, np.asarray(quantity.force(ref)(xj)), rtol=1e-10, atol=1e-10)


def test_periodic_soft_sphere_packing_2d_equals_jax_md():
    """JAX MD's jamming set-up: bidisperse soft spheres in a periodic square."""
    side = 5.0
    x = np.random.default_rng(4).uniform(0, side, (40, 2))
    species = np.array([0, 1] * 20)
    sigma = np.array([[1.0, 1.2], [1.2, 1.4]])
    system = cg.particle_system(x, species, box=np.diag([side, side]), kernel="soft_sphere",
                                params={"sigma": sigma, "epsilon": 1.0, "alpha": 2.0},
                                cutoff=1.4)
    displacement, _ = space.periodic(side)
    ref = jmd_energy.soft_sphere_pair(displacement, species=jnp.asarray(species),
                                      sigma=jnp.asarray(sigma))
    e, f = system.energy_and_forces(x)
    assert e == pytest.approx(float(ref(jnp.asarray(x))), rel=1e-12)
    np.testing.assert_allclose(f, np.asarray(quantity.force(ref)(jnp.asarray(x))),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [500, 3200])
def test_lennard_jones_fluid_with_neighbor_lists_equals_jax_md(n):
    """LJ fluid at rho = 0.8 with JAX MD's truncation (onset 2.0, cutoff 2.5, C1 switch):
    chronograd's explicit pairs (n = 500) and in-trace cell list (n = 3200) against JAX MD's
    neighbor list."""
    side = (n / 0.8) ** (1 / 3)
    g = int(np.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(g)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    x = (grid + 0.5 + np.random.default_rng(n).uniform(-0.1, 0.1, (n, 3))) * side / g
    kernel = smoothed(PAIR_KERNELS["lennard_jones"], 2.0, 2.5)
    system = cg.particle_system(x, box=np.diag([side] * 3), kernel=kernel,
                                params={"sigma": 1.0, "epsilon": 1.0}, cutoff=2.5)
    displacement, _ = space.periodic(side)
    neighbor_fn, energy_fn = jmd_energy.lennard_jones_neighbor_list(
        displacement, side, r_onset=2.0, r_cutoff=2.5, format=partition.OrderedSparse)
    xj = jnp.asarray(x)
    nbrs = neighbor_fn.allocate(xj)
    e, f = system.energy_and_forces(x)  # the system's skinned list above 3,000 particles
    assert e == pytest.approx(float(energy_fn(xj, nbrs)), rel=1e-11)
    ref_f = np.asarray(quantity.force(energy_fn)(xj, nbrs))
    np.testing.assert_allclose(f, ref_f, rtol=1e-9, atol=1e-9)
    in_trace = system.energy_fn()(xj, jnp.asarray(np.diag([side] * 3)), system.params)
    assert float(in_trace) == pytest.approx(e, rel=1e-12)  # the list built in the energy


def test_smoothed_kernel_is_c1_at_onset_and_cutoff():
    kernel = smoothed(PAIR_KERNELS["lennard_jones"], 2.0, 2.5)
    f = lambda r: kernel.fn(r, sigma=1.0, epsilon=1.0)  # noqa: E731
    df = jax.grad(f)
    for r0 in (2.0, 2.5):
        assert float(f(r0 - 1e-9)) == pytest.approx(float(f(r0 + 1e-9)), abs=1e-8)
        assert float(df(r0 - 1e-9)) == pytest.approx(float(df(r0 + 1e-9)), abs=1e-6)
    assert float(f(2.6)) == 0.0 and float(df(2.6)) == 0.0
    with pytest.raises(ValueError, match="r_onset < r_cutoff"):
        smoothed(PAIR_KERNELS["lennard_jones"], 2.5, 2.0)
