# The two commands of README.md. Each installs what it needs by itself into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null)

.PHONY: demo test venv

# uv makes the virtualenv; if the machine lacks it, pip installs it for this user first.
$(VENV)/.installed: pyproject.toml
	@if [ -z "$(UV)" ]; then $(PYTHON) -m pip install --quiet --user uv; fi
	@uv=$$(command -v uv || echo $$HOME/.local/bin/uv); \
	  $$uv venv --quiet --allow-existing -p $(PYTHON) $(VENV) && \
	  $$uv pip install --quiet -p $(PY) -e ".[all,dev]"
	@touch $@

venv: $(VENV)/.installed

## demo: simulated canary rollout -> traces -> verdict, no services needed
demo: venv
	$(VENV)/bin/canarytrace demo

## test: lint, format check and the whole test suite (what .ci/run calls)
test: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	bash tools/build-otel.sh  # the real collector and Jaeger for tests/integration (cached)
	$(PY) -m pytest
