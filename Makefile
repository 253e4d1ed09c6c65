# mmd-audiocraft: `make demo` (the main job) and `make test`; both set up what they need.
# STACK=pinned (default: audiocraft's own pins, torch 2.1) or STACK=latest (torch 2.11, numpy 2).
STACK ?= pinned
VENV := $(if $(filter pinned,$(STACK)),.venv,.venv-$(STACK))
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test test-fast lint demo demo-quick corpus bench clean distclean

setup:
	bash scripts/setup_env.sh $(STACK)

lint: setup
	$(VENV)/bin/ruff check .

# The SLURM test (tests/test_slurm_cluster.py: a one-node cluster it installs and starts) checks Dora's
# submission path, and the default_stack tests Dora's XP and grid reading, which the stack does not change: they
# run on the default stack only (CI stays under 45 minutes). SLURM=0 leaves the SLURM test out.
SLURM ?= 1
SLURM_MARK := $(if $(filter pinned,$(STACK)),$(if $(filter 0,$(SLURM)),-m "not slurm"),-m "not slurm and not default_stack")
# one rule with setup_env.sh, the demo, the corpus and the dset configs: $MMD_AUDIOCRAFT_CACHE, else ~/.cache/...
CACHE := $(or $(MMD_AUDIOCRAFT_CACHE),$(HOME)/.cache/mmd-audiocraft)

test: lint
	@if [ "$(STACK)" = pinned ] && [ "$(SLURM)" != 0 ] && [ "$$(id -u)" = 0 ] && [ -z "$$CI" ]; then \
	  echo "make test: as root, tests/test_slurm_cluster.py apt-get installs Slurm, munge and MariaDB (~12 MB)"; \
	  echo "  and starts their daemons on ports 16837-16840 under /tmp/mmd-slurm-test (stopped afterwards)."; \
	  echo "  To leave it out: make test SLURM=0. Starting in 10 s."; sleep 10; fi
	$(PY) scripts/run_pytest.py $(SLURM_MARK)

test-fast: setup
	$(PY) scripts/run_pytest.py -m "not slow"

corpus: setup
	$(PY) -m mmd_audiocraft.apps.demo.corpus

demo: setup
	$(PY) -m mmd_audiocraft.apps.demo $(DEMO_ARGS)

demo-quick: setup
	$(PY) -m mmd_audiocraft.apps.demo --quick $(DEMO_ARGS)

bench: corpus
	$(PY) benchmarks/bench_mmd.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_solver_step.py
	$(PY) benchmarks/bench_soak.py
	$(PY) benchmarks/bench_paper_scale.py
	$(PY) benchmarks/bench_musicgen_small_cpu.py
	$(PY) benchmarks/bench_measure.py

# What this checkout holds; the caches shared by checkouts (environments, audiocraft's sdist, the corpus, the
# demo's XPs) are in $(CACHE): `make distclean` removes them too.
clean:
	rm -rf .venv .venv-* .pytest_cache .ruff_cache demo_results.json demo_results.png

distclean: clean
	@echo "removing $(CACHE) ($$(du -sh $(CACHE) 2>/dev/null | cut -f1): environments, corpus, demo XPs)"
	rm -rf $(CACHE)
