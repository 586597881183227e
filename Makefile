# Two commands on a fresh machine: `make run` serves a demo issuer, `make test` runs the suite.
# Each creates .venv when it is missing and installs what it needs into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test typecheck bench mutants clean-demo system-packages

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is required" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when pyproject.toml changes.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[issuer,authlib]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/python -m issuer.demo

# SoftHSM2, PostgreSQL and Chromium for the tests that drive them for real: .ci/system-packages.sh
# installs what is missing with apt-get (softhsm2, opensc, postgresql, chromium).
system-packages:
	bash .ci/system-packages.sh

test: $(VENV)/.test-installed system-packages
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

typecheck: $(VENV)/.test-installed
	$(BIN)/python -m mypy

bench: $(VENV)/.test-installed
	$(BIN)/python -m bench

# Mutation testing of the security-critical modules ([tool.mutmut] in pyproject.toml): each
# surviving mutant is a check no test guards. Slow (hours for every module on 2 cores: run one
# module with `.venv/bin/mutmut run "issuer.verifier.jose*"`; docs/testing.md); not part of `make test`.
mutants: $(VENV)/.test-installed
	$(BIN)/python -m pip install -q -e '.[test,mutation]'
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results
