# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SEED   ?= 0

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m ruff check .
	CHRONOGRAD_TEST_FAST_COMPILE=1 $(PY) -m pytest -q -m "not slow" -n 2 --dist loadfile --durations=20

test-slow: $(STAMP)
	$(PY) -m pip install -q -e ".[test,qm]"
	CHRONOGRAD_TEST_SEED=$(SEED) $(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/bench_energy_forces.py
	$(PY) benchmarks/bench_neighbor_scaling.py
	$(PY) benchmarks/bench_smirnoff.py
	$(PY) benchmarks/bench_batch.py
	$(PY) benchmarks/bench_dynamics.py
	$(PY) benchmarks/bench_md_speed.py
	$(PY) benchmarks/bench_cli_end_to_end.py
	$(PY) benchmarks/bench_gradients.py
	$(PY) benchmarks/bench_fit.py
	$(PY) benchmarks/bench_fit_heldout.py
	$(PY) benchmarks/bench_pair_potentials.py
	$(PY) benchmarks/bench_torsion_relaxation.py
	$(PY) benchmarks/bench_bespoke.py
	$(PY) benchmarks/bench_liquid.py
	$(PY) benchmarks/bench_liquid_errors.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
