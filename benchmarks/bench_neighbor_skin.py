"""The neighbor-list skin against the cost of a water MD step (issue 19).

A larger skin means more pairs in every energy + forces call and fewer rebuilds (a rebuild
comes when an atom has moved half the skin; in rigid water the hydrogens trigger it). This
script times, for each skin, a LangevinMiddle step (2 fs, 300 K, 1/ps) of 2,655 Sage TIP3P
atoms (PME, float64) from the same equilibrated state, together with energy + forces on the
skin's list, one rebuild, and the mean steps between rebuilds (the list's displacement rule
replayed on every step's positions).

Run: `python benchmarks/bench_neighbor_skin.py [--skins 0.1 0.15 0.2 0.25]` (~5 min).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _results import best_time, machine_line, write_section  # noqa: E402
from bench_md_speed import rebuild_interval, water  # noqa: E402

from chronograd.dynamics import langevin  # noqa: E402
from chronograd.dynamics.runner import simulate  # noqa: E402
from chronograd.system.forces import force_fn  # noqa: E402


def ms_per_step(integ, state, n_steps, rounds=3):
    best = np.inf
    for _ in range(rounds):
        simulate(integ, state, 100)
        t0 = time.perf_counter()
        end = simulate(integ, state, n_steps)
        jax.block_until_ready(end.positions)
        best = min(best, (time.perf_counter() - t0) / n_steps)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skins", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.25])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()

    system, x, box = water(3.0)
    b = jnp.asarray(box)
    base = langevin(system, timestep=0.002, temperature=300.0, friction=1.0)
    state = simulate(base, base.init(x, key=jax.random.key(0), temperature=300.0), 500)
    x_eq = np.asarray(state.positions)
    rows = []
    for skin in args.skins:
        integ = langevin(system, timestep=0.002, temperature=300.0, friction=1.0, skin=skin)
        s = integ.init(x_eq, key=jax.random.key(1), temperature=300.0)
        s = s._replace(velocities=state.velocities)
        fns = system.neighbor_list(skin=skin)
        nbrs = fns.allocate(jnp.asarray(x_eq), b)
        ef = jax.jit(force_fn(system, fns))
        t_ef = best_time(ef, jnp.asarray(x_eq), b, system.params, nbrs)
        t_rebuild = best_time(fns.rebuild, jnp.asarray(x_eq), nbrs, b, repeats=5)
        interval = rebuild_interval(integ, s, 200, skin)
        t_step = ms_per_step(integ, s, args.steps)
        rows.append((skin, nbrs.idx.shape[1], t_ef, t_rebuild, interval, t_step))
        print(rows[-1], flush=True)
    best = min(rows, key=lambda r: r[-1])
    lines = [
        "## Neighbor-list skin vs a water MD step (issue 19; `benchmarks/bench_neighbor_skin.py`)",
        "",
        "Command: `python benchmarks/bench_neighbor_skin.py --skins "
        + " ".join(f"{s:g}" for s in args.skins) + f" --steps {args.steps}`.",
        machine_line(),
        "",
        f"Sage TIP3P, {system.n_atoms} atoms, PME 0.9 nm, float64, LangevinMiddle 2 fs; the"
        " same equilibrated state for every skin; step = fastest of 3 rounds.",
        "",
        "| skin (nm) | list width | energy + forces (ms) | rebuild (ms) | steps per rebuild |"
        " step (ms) |",
        "|---|---|---|---|---|---|",
    ]
    for skin, width, t_ef, t_rb, interval, t_step in rows:
        lines.append(f"| {skin:g} | {width} | {t_ef * 1e3:.1f} | {t_rb * 1e3:.1f} |"
                     f" {interval:.1f} | {t_step * 1e3:.1f} |")
    lines += ["", f"Fastest step: skin {best[0]:g} nm ({best[-1] * 1e3:.1f} ms)."]
    write_section("neighbor-skin", "\n".join(lines))


if __name__ == "__main__":
    main()
