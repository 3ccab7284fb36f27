"""``potentials.pair.pair_sum``: its one-pass force rule gives the same numbers as JAX's own
derivatives of the plain sum, for every derivative chronograd takes (issue 19)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from chronograd.potentials import pair
from chronograd.space.neighbor_list import neighbor_list

N, L, CUT = 60, 1.7, 0.7


def kernel(r, a_i, a_j, shared):
    lj = pair.lennard_jones(r, 0.5 * (a_i["sigma"] + a_j["sigma"]),
                            pair.safe_sqrt(a_i["epsilon"] * a_j["epsilon"]))
    lj = lj * pair.switching_function(r, 0.6, CUT)
    coul = pair.coulomb_ewald_direct(r, a_i["charge"] * a_j["charge"], shared["alpha"])
    return lj, coul


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)[:N]
    x = jnp.asarray((g + 0.5) * L / 4 + rng.uniform(-0.05, 0.05, (N, 3)))
    box = jnp.asarray(np.diag([L] * 3))
    atom = {"charge": jnp.asarray(rng.uniform(-0.8, 0.8, N)),
            "sigma": jnp.asarray(rng.uniform(0.25, 0.32, N)),
            "epsilon": jnp.asarray(rng.uniform(0.1, 0.9, N)).at[3].set(0.0)}
    shared = {"alpha": jnp.asarray(3.1)}
    nbrs = neighbor_list(N, CUT, skin=0.1, exclusions=[[0, 1], [5, 9]]).allocate(x, box)
    return x, box, atom, shared, nbrs.pairs()


def both(block):
    """(pair_sum, the plain sum JAX differentiates itself) as f(x, box, atom, shared, pairs)."""
    def fast(x, box, atom, shared, pairs):
        return pair.pair_sum(kernel, x, box, pairs, atom, shared, cutoff=CUT, block=block)

    def plain(x, box, atom, shared, pairs):
        return pair._plain_pair_sum(kernel, CUT, 1.0, block, x, box, pairs, atom, shared)

    return fast, plain


def close(a, b, rtol=1e-10):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        scale = max(float(jnp.max(jnp.abs(v))), 1e-12)
        assert float(jnp.max(jnp.abs(u - v))) <= rtol * scale


@pytest.mark.parametrize("block", [16, 4096])  # blocked scan, and one call
def test_forces_hessian_and_parameter_derivatives_equal_plain_autodiff(setup, block):
    x, box, atom, shared, pairs = setup
    assert pairs[1].shape[0] > 16
    fast, plain = both(block)
    total = [lambda *a, f=f: sum(f(*a)) for f in (fast, plain)]
    lj = [lambda *a, f=f: f(*a)[0] for f in (fast, plain)]
    close(fast(x, box, atom, shared, pairs), plain(x, box, atom, shared, pairs))
    for f in (total, lj):  # each output's forces, not only the total's
        grads = [jax.jit(jax.grad(g))(x, box, atom, shared, pairs) for g in f]
        close(*grads)
        assert float(jnp.max(jnp.abs(grads[0]))) > 1.0
    v = jnp.asarray(np.random.default_rng(1).normal(size=x.shape))
    hvp = [jax.jit(lambda y, g=g: jax.jvp(lambda z: jax.grad(g)(z, box, atom, shared, pairs),
                                          (y,), (v,))[1])(x) for g in total]
    close(*hvp, rtol=1e-9)
    fwd = [jax.jvp(lambda y, g=g: g(y, box, atom, shared, pairs), (x,), (v,))[1] for g in total]
    close(*fwd)
    # parameters, box, and positions together (the plain path's rule)
    for argnums in ((2,), (1,), (0, 2, 3)):
        close(*[jax.jit(jax.grad(g, argnums))(x, box, atom, shared, pairs) for g in total])
    # mixed partials d/dtheta dU/dx, reverse over the one-pass forces
    mixed = [jax.jit(jax.jacrev(lambda a, g=g: jnp.vdot(
        jax.grad(g)(x, box, a, shared, pairs), v)))(atom) for g in total]
    close(*mixed, rtol=1e-9)


def test_batched_explicit_pairs_two_dimensions_and_float32(setup):
    x, box, atom, shared, (i, j) = setup
    fast, plain = both(16)
    # a batch of configurations under vmap
    xs = x[None] + 0.01 * jnp.asarray(np.random.default_rng(2).normal(size=(3, N, 3)))
    g = [jax.jit(jax.vmap(jax.grad(lambda y, f=f: sum(f(y, box, atom, shared, (i, j))))))(xs)
         for f in (fast, plain)]
    close(*g)
    # explicit [P] pairs, non-periodic
    ii, jj = np.triu_indices(N, 1)
    p = (jnp.asarray(ii), jnp.asarray(jj))
    g = [jax.grad(lambda y, f=f: sum(f(y, None, atom, shared, p)))(x) for f in (fast, plain)]
    close(*g)
    # two dimensions
    x2, box2 = x[:, :2], box[:2, :2]
    g = [jax.grad(lambda y, f=f: sum(f(y, box2, atom, shared, p)))(x2) for f in (fast, plain)]
    close(*g)
    assert g[0].shape == (N, 2)
    # float32 positions with float64 parameters (promoted), and all float32
    f32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), (x, box, atom, shared))
    for args in ((f32[0], box, atom, shared), f32):
        u, gf = jax.value_and_grad(lambda y, a=args: sum(fast(y, *a[1:], (i, j))))(args[0])
        g64 = jax.grad(lambda y: sum(plain(y, box, atom, shared, (i, j))))(x)
        assert np.isfinite(float(u))
        assert float(jnp.max(jnp.abs(gf - g64))) <= 1e-3 * float(jnp.max(jnp.abs(g64)))
