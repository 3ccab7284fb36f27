import gc
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# One persistent XLA compilation cache for the whole run, set before jax is imported and
# inherited by CLI subprocesses and Dask workers: a program that several tests, the two
# pytest-xdist workers, a resumed run or a worker compile alike is compiled once. Results do
# not change (the cache is keyed by the program and the jax/XLA version).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

import chronograd  # noqa: E402,F401  (enables float64 before any test builds arrays)


def pytest_collection_finish(session):
    """Objects alive after collection (modules, force fields) are never garbage: move them out
    of the collector's reach, and collect less often (JAX tracing makes many short-lived
    objects; full collections over a large heap cost several percent of the suite)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 50)


# Linux's default vm.max_map_count is 65,530; every loaded XLA CPU executable holds its own
# memory mappings. A worker that keeps the programs of ~30 test files alive passes 50,000 of
# them, and XLA's next compile or cache write segfaults (seen in CI). Programs are shared
# across files (that saves minutes), so they are dropped only past this many mappings.
MAX_MAPPINGS = 20_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to respect
        return 0


def pytest_runtest_teardown(item, nextitem):
    """Between test files, free all compiled programs once the worker holds too many
    mappings; later files reload what they share from the persistent cache on disk."""
    if (nextitem is None or nextitem.module is not item.module) and _mappings() > MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()


# The default suite is bound by XLA compile time, not run time: most tests compile their
# programs once and run them for milliseconds. With CHRONOGRAD_TEST_FAST_COMPILE=1 (`make
# test` sets it) those compile without LLVM's optimization passes (JAX's
# jax_disable_most_optimizations): ~40 % less compile time, slower programs. Tests whose run
# time dominates (dynamics, trajectory gradients) carry the `runtime_bound` marker and
# compile fully optimized programs. Results are checked to the same tolerances either way
# (the suite passes in both modes); the flag is not part of JAX's in-memory jit key, so a
# program compiled in one mode and reused by a test of the other keeps its first mode
# (speed only).
FAST_COMPILE = os.environ.get("CHRONOGRAD_TEST_FAST_COMPILE", "") not in ("", "0")


def pytest_runtest_setup(item):
    if FAST_COMPILE:
        jax.config.update("jax_disable_most_optimizations",
                          item.get_closest_marker("runtime_bound") is None)
