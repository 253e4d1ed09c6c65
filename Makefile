# mmd-audiocraft: `make demo` (the main job) and `make test`; both set up what they need.
# STACK=pinned (default: audiocraft's own pins, torch 2.1) or STACK=latest (torch 2.11, numpy 2).
STACK ?= pinned
VENV := $(if $(filter pinned,$(STACK)),.venv,.venv-$(STACK))
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test test-fast lint demo demo-quick corpus bench clean

setup:
	bash scripts/setup_env.sh $(STACK)

lint: setup
	$(VENV)/bin/ruff check .

# The SLURM test (tests/test_slurm_cluster.py: a one-node cluster it installs and starts, ~4 min) checks
# Dora's submission path, and `compare`'s end-to-end test (tests/test_compare.py, ~2 min) Dora's XP and grid
# reading, which the stack does not change: they run on the default stack only (CI stays under 45 minutes).
SLURM_MARK := $(if $(filter pinned,$(STACK)),,-m "not slurm and not default_stack")

test: lint
	$(PY) scripts/run_pytest.py $(SLURM_MARK)

test-fast: setup
	$(PY) scripts/run_pytest.py -m "not slow"

corpus: setup
	$(PY) -m mmd_audiocraft.apps.demo.corpus

demo: setup
	$(PY) -m mmd_audiocraft.apps.demo $(DEMO_ARGS)

demo-quick: setup
	$(PY) -m mmd_audiocraft.apps.demo --quick $(DEMO_ARGS)

bench: setup
	$(PY) benchmarks/bench_mmd.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_solver_step.py
	$(PY) benchmarks/bench_soak.py
	$(PY) benchmarks/bench_paper_scale.py
	$(PY) benchmarks/bench_musicgen_small_cpu.py

clean:
	rm -rf .venv .venv-* .pytest_cache .ruff_cache demo_results.json demo_results.png
