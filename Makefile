# Every target creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench completions docs tools compile clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tqcli needs Python 3.11 or newer: run make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# compat mode: a plain path entry, so no import hook slows every start-up
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	@touch $@

# Byte-compile so start-up does not recompile sources (PYTHONDONTWRITEBYTECODE may be set).
compile: $(STAMP)
	@$(BIN)/python -m compileall -q tqcli

tools:
	@scripts/ensure-tools

test: $(STAMP) tools compile
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

demo: $(STAMP) compile
	@PATH="$(CURDIR)/$(BIN):$$PATH" scripts/demo

# PostgreSQL's server binaries (tools) for the PostgreSQL half; BENCH_ARGS='--quick', '--no-postgres', '--no-compare'...
bench: $(STAMP) tools compile
	$(BIN)/python bench/run.py $(BENCH_ARGS)

completions: $(STAMP)
	$(BIN)/python scripts/gen-completions

docs: $(STAMP)
	$(BIN)/python scripts/gen-cli-docs

clean:
	rm -rf $(VENV) .demo .pytest_cache .hypothesis
