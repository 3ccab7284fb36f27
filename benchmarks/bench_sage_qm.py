"""`chronograd fit examples/fit/sage_qm.toml`: wall time before and after the "systems as data"
work, same machine, same run of this script.

"Before" is the code at revision ``--before`` (default f1a971f, the last commit before it),
unpacked from git into a temporary folder and put first on PYTHONPATH; "after" is this
checkout. Both run the unchanged config (AM1-BCC charges, 40 L-BFGS iterations) as a
subprocess, from start-up to the written report, into temporary output folders; the final
losses and held-out metrics are compared.
Run: `python benchmarks/bench_sage_qm.py [--before REV]` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _results import machine_line, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "fit" / "sage_qm.toml"


def _config(folder: Path) -> Path:
    text = CONFIG.read_text()
    text = text.replace('dataset = "../../data/qm"', f'dataset = "{ROOT / "data" / "qm"}"')
    text = text.replace('directory = "../../out/fit-sage-qm"', f'directory = "{folder / "out"}"')
    path = folder / "sage_qm.toml"
    path.write_text(text)
    return path


def _run(folder: Path, pythonpath: str | None) -> tuple[float, dict]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    config = _config(folder)
    # run from the temporary folder: with ``python -m`` the working directory comes first on
    # sys.path, so running from the checkout would import this checkout's code as "before"
    where = subprocess.run([sys.executable, "-c", "import chronograd; print(chronograd.__file__)"],
                           env=env, cwd=folder, capture_output=True, text=True).stdout.strip()
    if pythonpath and not where.startswith(pythonpath):
        raise SystemExit(f"'before' would import {where}, not the code in {pythonpath}")
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "chronograd.cli.main", "fit", str(config),
                          "--quiet"], env=env, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"fit failed ({pythonpath or 'after'}): {res.stderr[-2000:]}")
    log = [json.loads(line) for line in (folder / "out" / "log.jsonl").read_text().splitlines()]
    return wall, log[-1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="f1a971f")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "before-src"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "chronograd"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        (tmp / "before").mkdir()
        (tmp / "after").mkdir()
        t_before, last_before = _run(tmp / "before", str(old))
        t_after, last_after = _run(tmp / "after", None)
    loss_b, loss_a = last_before["loss"], last_after["loss"]
    body = f"""## Fitting examples/fit/sage_qm.toml before and after "systems as data"

Command: `python benchmarks/bench_sage_qm.py --before {args.before}` (both runs in one run of
the script, as subprocesses from start-up to the written report).
{machine_line()}

| code | wall time | final loss | final iteration |
|---|---|---|---|
| before ({args.before}) | {t_before / 60:.1f} min | {loss_b:.6g} | {last_before.get("iteration")} |
| after (this checkout) | {t_after / 60:.1f} min | {loss_a:.6g} | {last_after.get("iteration")} |

Speed-up {t_before / t_after:.2f}x; relative difference of the final losses
{abs(loss_a - loss_b) / abs(loss_b):.1e}.

Where the time went before, and what changed: the optimized-geometry target unrolled one
L-BFGS minimization and one CG solve per geometry into its programs and ran them eagerly (a
compilation per primitive) for its checks and metrics; it is now one `vmap`ped minimization and
one `vmap`ped implicit VJP per size bucket (`batched_minimized_positions`), with checks and
metrics compiled once. Size buckets are one per doubling of the atom count (these 9-16-atom
molecules share one bucket, so every QM program holds one copy of the energy, not four), and
the AM1-BCC charges of the records are computed with one antechamber process per CPU.
"""
    write_section("sage_qm", body)


if __name__ == "__main__":
    main()
