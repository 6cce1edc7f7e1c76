# Two commands matter: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint unit integration e2e chaos stack-up stack-down stack-status contracts \
	workflows-full

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(INSTALLED)

demo: $(INSTALLED)
	$(PY) tools/demo.py

# -s: every test prints its figure (S1..S6, R1..R16, the worker and projection figures).
test: $(INSTALLED) lint
	tools/stack up
	$(PY) -m pytest tests -s --durations=25

lint: $(INSTALLED)
	$(VENV)/bin/ruff check services examples tests tools
	$(VENV)/bin/mypy

unit: $(INSTALLED)
	$(PY) -m pytest tests/unit

integration: $(INSTALLED)
	$(PY) -m pytest tests/integration

e2e: $(INSTALLED)
	$(PY) -m pytest tests/e2e

# The full chaos campaign (tests/chaos, CHAOS_SCALE=full); `make test` runs it reduced.
chaos: $(INSTALLED)
	tools/stack up
	CHAOS_SCALE=full $(PY) -m pytest tests/chaos -s -p no:cacheprovider

contracts: $(INSTALLED)
	$(PY) tools/generate_contracts.py

stack-up:
	tools/stack up

stack-down:
	tools/stack down

stack-status:
	tools/stack status

bench: $(INSTALLED)
	$(PY) tools/bench/run.py

# Code-first workflows at full scale: the e2e module with a 1,000-step workflow, and the
# replay cost per event of a 1,000-step workflow with and without the live-body cache.
workflows-full: $(INSTALLED)
	tools/stack up
	CHAOS_SCALE=full $(PY) -m pytest tests/e2e/test_workflows.py -s -p no:cacheprovider
	$(PY) tools/workflow_replay_bench.py 1000

# 1,000 SSE watchers on one API process: memory per watcher, event delivery p99.
bench-sse: $(INSTALLED)
	$(PY) tools/bench/sse_watchers.py --watchers 1000 --tasks 100
