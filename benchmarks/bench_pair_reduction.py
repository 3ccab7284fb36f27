"""Where the pair loop's force pass goes, and whether a scatter-free reduction pays (issue 19).

chronograd's pair forces (``potentials.pair.pair_sum``) run over a half neighbor list (each
pair once): a row's forces are summed along the row, and the j side is scattered
(``g.at[j].add``). On XLA:CPU that scatter is the one serial piece of the pass. This script
times, on the neighbor list of a Sage TIP3P water box (2,655 atoms, cutoff 0.9 nm + 0.1 nm
skin) in float64:

1. the whole force pass of a Lennard-Jones (switched 0.8-0.9 nm) + Ewald real-space kernel,
   as ``pair_sum`` runs it (half list, rows + scatter), and its energy-only sum;
2. the reduction alone on [N, M, 3] pair forces: the scatter ``g.at[j].add``, a row sum, a
   gather through an inverse list (each atom's positions in the flat list), and a sorted
   ``segment_sum``;
3. the scatter-free alternative: a full list (each pair in both rows), forces by row sums
   only, energy halved — twice the kernel work, no scatter.

Each timing is the fastest of 10 calls of one compiled program. Run:
`python benchmarks/bench_pair_reduction.py` (~1 min).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import best_time, machine_line, write_section  # noqa: E402

import chronograd as cg  # noqa: E402
from chronograd.potentials import pair as pp  # noqa: E402
from chronograd.space.neighbor_list import neighbor_list  # noqa: E402
from chronograd.topology.boxes import water_box  # noqa: E402

CUTOFF, SKIN, ALPHA = 0.9, 0.1, 3.12


def kernel(r, a_i, a_j, shared):
    sig = 0.5 * (a_i["sigma"] + a_j["sigma"])
    eps = pp.safe_sqrt(a_i["epsilon"] * a_j["epsilon"])
    lj = pp.lennard_jones(r, sig, eps) * pp.switching_function(r, 0.8, CUTOFF)
    return (lj + pp.coulomb_ewald_direct(r, a_i["charge"] * a_j["charge"], ALPHA),)


def tip3p_atoms(n_atoms: int) -> dict:
    """TIP3P per-atom sigma (nm), epsilon (kJ/mol) and charge (e) of O, H, H, ... in order."""
    o = np.arange(n_atoms) % 3 == 0
    return {"sigma": np.where(o, 0.315, 0.1), "epsilon": np.where(o, 0.636, 0.0),
            "charge": np.where(o, -0.834, 0.417)}


def main():
    mols, pos, box = water_box(3.0)
    system = cg.ForceField("openff-2.2.1.offxml").create_system(mols, box=box)
    x = jnp.asarray(cg.minimize(system, pos, box, tolerance=50.0).positions)
    box = jnp.asarray(box)
    n = x.shape[0]
    atoms = {k: jnp.asarray(v) for k, v in tip3p_atoms(n).items()}
    fns = neighbor_list(n, CUTOFF, skin=SKIN)
    nbrs = fns.allocate(x, box)
    i_half, j_half = nbrs.pairs()
    jh = np.asarray(j_half)
    # full list: row a holds its half-list j's and every row that lists a
    rows = [list(r[r < n]) for r in jh]
    for a, r in enumerate(jh):
        for b in r[r < n]:
            rows[b].append(a)
    width = max(len(r) for r in rows)
    jf = np.full((n, width), n)
    for a, r in enumerate(rows):
        jf[a, :len(r)] = r
    j_full = jnp.asarray(jf)
    pairs_half = int((jh < n).sum())

    energy_half = jax.jit(lambda q: pp.pair_sum(kernel, q, box, (i_half, j_half), atoms,
                                                cutoff=CUTOFF)[0])
    forces_half = jax.jit(jax.grad(energy_half))

    def full_forces(q):
        """(energy, dU/dx) from the full list: rows only, each pair counted twice."""
        i_b, j_b = pp._row_blocks((i_half, j_full), n, pp.ROW_BLOCK)

        def body(carry, ij):
            total, g = carry
            pi, pj = ij
            values, mask, r, dr = pp._pair_values(kernel, CUTOFF, 1.0, q, box, pi, pj, atoms,
                                                  None)
            (u,), (du,) = jax.jvp(values, (r,), (jnp.ones_like(r),))
            u, du = jnp.where(mask, u, 0.0), jnp.where(mask, du, 0.0)
            f = jnp.sum((du / r)[..., None] * dr, axis=1)
            return (total + 0.5 * jnp.sum(u), g.at[pi[:, 0]].add(f, mode="drop")), None

        zero = (jnp.zeros(()), jnp.zeros_like(q))
        return jax.lax.scan(body, zero, (i_b, j_b))[0]

    full = jax.jit(full_forces)
    e_full, g_full = full(x)
    g_half = forces_half(x)
    err = float(jnp.max(jnp.abs(g_full - g_half)))
    assert abs(float(e_full - energy_half(x))) < 1e-6 and err < 1e-8, err

    m = jh.shape[1]
    rng = np.random.default_rng(0)
    fp = jnp.asarray(rng.standard_normal((n, m, 3)))
    jj = jnp.asarray(jh)
    flat = jh.reshape(-1)
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=n + 1)[:n]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    inv = np.full((n, counts.max()), n * m)
    for a in range(n):
        inv[a, :counts[a]] = order[starts[a]:starts[a] + counts[a]]
    inv, order_j, seg = jnp.asarray(inv), jnp.asarray(order), jnp.asarray(flat[order])

    reductions = {
        "scatter g.at[j].add (as now)": jax.jit(
            lambda f: jnp.zeros((n, 3)).at[jj].add(f, mode="drop")),
        "row sum": jax.jit(lambda f: jnp.sum(f, 1)),
        "gather through an inverse list": jax.jit(lambda f: jnp.sum(jnp.concatenate(
            [f.reshape(n * m, 3), jnp.zeros((1, 3))])[inv], axis=1)),
        "sorted segment_sum": jax.jit(lambda f: jax.ops.segment_sum(
            f.reshape(n * m, 3)[order_j], seg, n + 1, indices_are_sorted=True)[:n]),
    }
    want = reductions["scatter g.at[j].add (as now)"](fp)
    for name in ("gather through an inverse list", "sorted segment_sum"):
        assert float(jnp.max(jnp.abs(reductions[name](fp) - want))) < 1e-9, name

    t_energy, t_half, t_full = best_time(energy_half, x), best_time(forces_half, x), \
        best_time(full, x)
    lines = [
        "## Pair loop: the force pass's reduction, half list + scatter vs alternatives"
        " (issue 19; `benchmarks/bench_pair_reduction.py`)",
        "",
        "Command: `python benchmarks/bench_pair_reduction.py`.",
        machine_line(),
        "",
        f"Sage TIP3P water box, {n} atoms, cutoff {CUTOFF} nm + {SKIN} nm skin, float64;"
        f" half list {pairs_half} pairs in [{n}, {m}] rows, full list [{n}, {width}]. Kernel:"
        " LJ switched 0.8-0.9 nm + Ewald real space (one output). Fastest of 10 calls.",
        "",
        "| program | ms |",
        "|---|---|",
        f"| energy only, half list (pair_sum) | {t_energy * 1e3:.2f} |",
        f"| energy + forces, half list: rows + scatter (pair_sum's force rule) |"
        f" {t_half * 1e3:.2f} |",
        f"| energy + forces, full list: rows only, no scatter | {t_full * 1e3:.2f} |",
    ]
    for name, fn in reductions.items():
        lines.append(f"| reduction alone on [{n}, {m}, 3] pair forces: {name} |"
                     f" {best_time(fn, fp) * 1e3:.2f} |")
    lines += ["", f"Full list vs half list + scatter: {t_full / t_half:.2f}x the time"
              f" (forces agree to {err:.1e})."]
    write_section("pair-reduction", "\n".join(lines))


if __name__ == "__main__":
    main()
