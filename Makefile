# The two commands of the README:
#   make demo   the main job: the local stack on embedded defaults
#   make test   lint, type checks and the whole test suite (what CI runs)
# Both run scripts/bootstrap.sh first, which installs what is missing and does nothing otherwise.

VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: demo test bootstrap lint unit integration

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@$(VENV)/bin/ttrv demo

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

unit: bootstrap
	$(PY) -m pytest -m "not integration"

integration: bootstrap
	$(PY) -m pytest -m integration

test: lint
	$(PY) -m pytest
