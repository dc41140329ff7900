# The two commands of README.md. Each installs what it needs by itself into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# uv makes the virtualenv and installs fast; if the machine lacks it, pip installs it
# for this user first.
UV = $(shell command -v uv 2>/dev/null || echo $$HOME/.local/bin/uv)

.PHONY: demo test

$(UV):
	$(PYTHON) -m pip install --quiet --user uv

# The demo needs the SDKs only; the tests need every extra (the local embedding model
# pulls in torch, a large first download that uv caches outside the checkout).
$(VENV)/.demo-installed: pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing -p $(PYTHON) $(VENV)
	$(UV) pip install --quiet -p $(PY) -e ".[demo]"
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing -p $(PYTHON) $(VENV)
	$(UV) pip install --quiet -p $(PY) -e ".[all,dev]"
	@touch $@

## demo: simulated canary rollout -> traces -> verdict, no services needed
demo: $(VENV)/.demo-installed
	$(VENV)/bin/canarytrace demo

## test: lint, format and type checks and the whole test suite (what .ci/run calls)
test: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/ruff format --check src tests bench tools
	$(PY) -m mypy  # strict, on src (settings in pyproject.toml)
	bash tools/build-otel.sh  # the real collector and Jaeger for tests/integration (cached)
	$(PY) -m pytest
	UV=$(UV) $(PY) tools/test_floors.py  # the suite again on the oldest versions pyproject admits
