"""Benchmark helpers: timing, the machine line, and writing a Markdown section into
benchmarks/RESULTS.md between named markers."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine_line() -> str:
    import jax
    import openmm

    try:
        cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines()
                      if line.startswith("Model name")), platform.processor())
    except OSError:
        model = platform.processor()
    import os

    return (f"Machine: {model}, {os.cpu_count()} cores; jax {jax.__version__}, "
            f"OpenMM {openmm.__version__}, Python {platform.python_version()}.")


def median_time(fn, repeats: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, waiting for JAX's asynchronous results."""
    import statistics
    import time

    import jax

    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    print(body)


def best_time(fn, *args, repeats: int = 10) -> float:
    """Fastest of ``repeats`` calls of ``fn(*args)`` after one warm-up call, seconds (the
    machine's noise only ever adds time)."""
    import time

    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)

