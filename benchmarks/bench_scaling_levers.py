"""Why energy + forces per atom grow from 2.7k to 26k atoms: two levers, measured (issue 19 c).

1. FFT sizes. chronograd's default PME grid is OpenMM's Reference platform's
   (``max(6, ceil(2 alpha L / (3 tol^(1/5))))``: 41 and 89 points per axis for the 3 and 6.5 nm
   water boxes, both prime). OpenMM's CPU platform rounds each axis up to a size with factors
   <= 7 (one 11 allowed), here 42 and 90, and so does ``System.with_fft_pme_grid``
   (``ewald.fft_dimension``). Timed: rfftn + irfftn of each grid.
2. Atom order and the half list's ownership rule. The direct-space pair pass (Lennard-Jones
   switched 0.8-0.9 nm + Ewald real space, one output, as ``bench_pair_reduction``) and the
   neighbor-list rebuild on the 26,067-atom box with its molecules in the builder's order,
   shuffled, and sorted by the 0.5 nm cell of their oxygen (x, then y, then z); each with the
   list's ownership rule (a hashed bit of each index) and with the parity rule it replaced
   (``(i < j) == (i + j even)``, patched in for the comparison only), which left the rows of
   the builder's order unbalanced and the list wider.
3. The list's head room. Every row is as wide as the widest row at allocation times the
   capacity multiplier (1.25, as JAX MD's default), and every padded slot costs a pair
   evaluation. Timed: the pair pass with lists 1.25x, 1.15x and 1.10x the widest row, on the
   2.7k- and 26k-atom boxes; and how far the widest row of a Sage water box (2,655 atoms,
   LangevinMiddle 2 fs, 300 K) moves from its value at allocation over 6 ps, which is what the
   head room has to cover (beyond it the list overflows and is regrown: correct, but a
   re-trace).

Each timing is the fastest of 5 calls of one compiled program. Run:
`python benchmarks/bench_scaling_levers.py` (~5 min).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import bench_pair_reduction as pair_bench  # noqa: E402
from _results import best_time, machine_line, write_section  # noqa: E402

from chronograd.potentials import ewald  # noqa: E402
from chronograd.potentials import pair as pp  # noqa: E402
from chronograd.space.neighbor_list import neighbor_list  # noqa: E402
from chronograd.topology.boxes import water_box  # noqa: E402


def fft_rows():
    rows = []
    for k in (41, 89):
        fast = ewald.fft_dimension(k)
        times = []
        for size in (k, fast):
            g = jnp.asarray(np.random.default_rng(0).normal(size=(size,) * 3))
            f = jax.jit(lambda a: jnp.fft.irfftn(jnp.fft.rfftn(a), a.shape))
            times.append(best_time(f, g, repeats=5))
        rows.append(f"| {k}^3 -> {fast}^3 | {times[0] * 1e3:.2f} | {times[1] * 1e3:.2f} |"
                    f" {times[0] / times[1]:.1f} |")
    return rows


def tip3p_box(length_nm: float):
    """(positions [N, 3], box, per-atom TIP3P parameters, intramolecular exclusions)."""
    _, pos, box = water_box(length_nm)
    n = len(pos)
    within = np.array([(0, 1), (0, 2), (1, 2)])
    exclusions = (3 * np.arange(n // 3)[:, None, None] + within[None]).reshape(-1, 2)
    return np.asarray(pos), box, pair_bench.tip3p_atoms(n), exclusions


def pair_ef_time(x, b, nbrs, atoms) -> float:
    """Fastest of 5: the pair pass's energy + forces on ``nbrs``."""
    def u(y):
        return sum(pp.pair_sum(pair_bench.kernel, y, b, nbrs.pairs(), atoms,
                               cutoff=pair_bench.CUTOFF))

    return best_time(jax.jit(jax.value_and_grad(u)), x, repeats=5)


def row_counts(idx) -> np.ndarray:
    """Neighbors held by each row of a list (padding is the index N)."""
    idx = np.asarray(idx)
    return (idx < idx.shape[0]).sum(1)


def order_rows(length_nm: float):
    pos, box, atoms0, exclusions0 = tip3p_box(length_nm)
    n = len(pos)
    n_mol = n // 3
    b = jnp.asarray(box)
    cell = np.floor((pos[::3] % np.diag(np.asarray(box))) / 0.5).astype(int)
    orders = {"builder's order": np.arange(n_mol),
              "molecules shuffled": np.random.default_rng(0).permutation(n_mol),
              "molecules sorted by 0.5 nm cell": np.lexsort((cell[:, 2], cell[:, 1],
                                                             cell[:, 0]))}
    rows = []
    module = sys.modules["chronograd.space.neighbor_list"]
    hashed = module._owns_pair

    def parity(i, j):
        return (i != j) & ((i < j) == ((i + j) % 2 == 0))

    for (name, mol_order), (rule, owns) in itertools.product(
            orders.items(), (("hashed bit", hashed), ("parity of i + j", parity))):
        module._owns_pair = owns  # read when the list's program is traced

        perm = (3 * mol_order[:, None] + np.arange(3)[None]).ravel()  # new atom k = old perm[k]
        new_index = np.argsort(perm)
        x = jnp.asarray(pos[perm])
        atoms = {k: jnp.asarray(v[perm]) for k, v in atoms0.items()}
        fns = neighbor_list(n, pair_bench.CUTOFF, skin=pair_bench.SKIN,
                            exclusions=new_index[exclusions0])
        nbrs = fns.allocate(x, b)
        t_ef = pair_ef_time(x, b, nbrs, atoms)
        t_rebuild = best_time(fns.rebuild, x, nbrs, b, repeats=3)
        counts = row_counts(nbrs.idx)
        rows.append(f"| {name} | {rule} | {nbrs.max_neighbors} | {counts.max()} /"
                    f" {counts.mean():.0f} | {t_ef * 1e3:.1f} | {t_rebuild * 1e3:.1f} |")
    module._owns_pair = hashed
    return n, rows


HEADROOM = (1.25, 1.15, 1.10)


def headroom_rows(length_nm: float):
    pos, box, atoms, exclusions = tip3p_box(length_nm)
    n = len(pos)
    b, x = jnp.asarray(box), jnp.asarray(pos)
    atoms = {k: jnp.asarray(v) for k, v in atoms.items()}
    fns = neighbor_list(n, pair_bench.CUTOFF, skin=pair_bench.SKIN, exclusions=exclusions)
    widest = int(row_counts(fns.allocate(x, b).idx).max())
    times = []
    for m in HEADROOM:
        nbrs = fns.allocate(x, b, max_neighbors=int(np.ceil(widest * m)))
        times.append((nbrs.max_neighbors, pair_ef_time(x, b, nbrs, atoms)))
    cells = " | ".join(f"{w}: {t * 1e3:.1f}" for w, t in times)
    return f"| {n} | {widest} | {cells} | {times[0][1] / times[-1][1]:.2f} |"


def widest_row_drift(steps: int = 3000):
    """(widest row at allocation, widest over the run) of a Sage water box's own list."""
    from bench_md_speed import water

    from chronograd.dynamics import langevin
    from chronograd.dynamics.runner import simulate

    system, x, _ = water(3.0)
    integ = langevin(system, timestep=0.002, temperature=300.0, friction=1.0)
    state = integ.init(x, key=jax.random.key(0), temperature=300.0)
    seen = []

    class Widest:
        every = 100

        def report(self, s, info):
            seen.append(int(row_counts(s.neighbors.idx).max()))

    start = int(row_counts(state.neighbors.idx).max())
    simulate(integ, state, steps, reporters=[Widest()])
    return system.n_atoms, start, max(seen), steps * 0.002


def main():
    ffts = fft_rows()
    n, orders = order_rows(6.5)
    headroom = [headroom_rows(3.0), headroom_rows(6.5)]
    n_md, start, widest, ps = widest_row_drift()
    body = "\n".join([
        "## Per-atom growth: FFT sizes, atom order, list head room (issue 19 c;"
        " `benchmarks/bench_scaling_levers.py`)",
        "",
        "Command: `python benchmarks/bench_scaling_levers.py` (all numbers from one run).",
        machine_line(),
        "",
        "PME grids as derived (OpenMM Reference's rule, chronograd's default) and as OpenMM's"
        " CPU platform rounds them (System.with_fft_pme_grid); float64, rfftn + irfftn,"
        " fastest of 5:",
        "",
        "| grid | ms | ms, rounded | ratio |",
        "|---|---|---|---|",
        *ffts,
        "",
        f"Direct-space pairs (LJ + Ewald real space, one output) and neighbor-list rebuild,"
        f" {n}-atom TIP3P box, float64, by atom order:",
        "",
        "| atom order | ownership rule | list width | widest / mean row | pair E+F ms |"
        " rebuild ms |",
        "|---|---|---|---|---|---|",
        *orders,
        "",
        "List head room: pair E+F (same kernel, builder's order) with every row"
        " 1.25x / 1.15x / 1.10x the widest row at allocation (list width: ms):",
        "",
        "| atoms | widest row | " + " | ".join(f"{m:g}x" for m in HEADROOM)
        + f" | time {HEADROOM[0]:g}x / {HEADROOM[-1]:g}x |",
        "|---|---|---|---|---|---|",
        *headroom,
        "",
        f"Widest row of a Sage water box's own list ({n_md} atoms, LangevinMiddle 2 fs, 300 K,"
        f" from the minimized box): {start} at allocation, at most {widest} over {ps:g} ps"
        f" ({widest / start:.3f}x).",
    ])
    write_section("scaling-levers", body)


if __name__ == "__main__":
    main()
