# The front door. `make run` and `make test` are all a newcomer needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app wsgi
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run install install-dev db test lint audit bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

db: install
	$(FLASK) db upgrade
	$(FLASK) users bootstrap

# Web server, task worker and, without Plivo credentials, the Plivo simulator.
run: db
	@if $(FLASK) sandbox --check; then procs="web worker simulator"; \
	  echo "Sandbox mode: no Plivo credentials, using the bundled simulator."; \
	  else procs="web worker"; fi; \
	  echo "Dashboard: http://127.0.0.1:5000"; \
	  exec $(BIN)/honcho -f Procfile start $$procs

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# Known vulnerabilities in the pinned dependencies (pip-audit); skipped, saying so, where
# PyPI's advisory data cannot be reached.
audit:
	PYTHON=$(PYTHON) scripts/audit.sh

test: install-dev lint
	scripts/install-test-deps.sh
	$(BIN)/python -m pytest

bench: install-dev
	scripts/install-test-deps.sh
	$(BIN)/python -m bench

bench-smoke: install-dev
	scripts/install-test-deps.sh
	$(BIN)/python -m bench --smoke

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
