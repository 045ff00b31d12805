# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APP_PACKAGES := allocation roles asset_client iothub_client device_twin observability resilience sync reconciliation operator_cli audit function_app.py bootstrap.py settings.py

.PHONY: install run test lint typecheck pytest bench chaos format clean

install: $(STAMP)

# Re-installs only when the dependency declarations change, so `make install` is idempotent and cheap.
$(STAMP): pyproject.toml requirements.txt $(wildcard package.json package-lock.json)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@if [ -f package.json ]; then npm ci --no-audit --no-fund --loglevel=error; fi
	@touch $(STAMP)

run: install
	$(BIN)/python -m devstack up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy --strict $(APP_PACKAGES)
	$(BIN)/mypy devstack bench tests

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .devstack .mypy_cache .ruff_cache .pytest_cache *.egg-info

# The chaos test at full size (make test runs it with 60 devices).
chaos: install
	CHAOS_DEVICES=300 $(BIN)/pytest -s tests/integration/test_chaos.py
