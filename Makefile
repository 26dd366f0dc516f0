# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs first: the demo the
# runtime and its extra ([server]), the tests every extra. The editable install is a plain
# path entry (pyproject.toml's package-dir), so mypy finds the package as users' tools do.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
DOCS_STAMP := $(VENV)/.installed-docs
# Mermaid itself (npm, pinned by tests/mermaid/package-lock.json) renders diagrams/*.mmd in a test.
MERMAID := tests/mermaid/node_modules/.installed

.PHONY: demo test lint docs bench fuzz diagrams wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP) $(DEMO_STAMP)

$(DOCS_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/smtp-fsm demo

# Without npm the Mermaid test skips (locally) or fails (CI: .ci/run installs npm first).
$(MERMAID): tests/mermaid/package-lock.json
	if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/mermaid --no-audit --no-fund --loglevel=error && touch $@ \
		|| [ "$$SMTP_FSM_REQUIRE_TOOLS" != 1 ]; fi  # offline: the test skips locally, fails in CI

test: $(STAMP) $(MERMAID)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict smtp_fsm examples

# The site, warnings as errors, then every example on it run against a local server.
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(BIN)/sphinx-build -W --keep-going -q -b doctest docs docs/_build/doctest

# The SVGs ship in the package too (smtp_fsm/_svg): pages and diagrams work without Graphviz.
diagrams: $(STAMP)
	$(BIN)/smtp-fsm diagram --out diagrams
	mkdir -p smtp_fsm/_svg && cp diagrams/*.svg smtp_fsm/_svg/
	$(BIN)/python -c "from smtp_fsm.diagram import update_readme; update_readme('README.md')"

bench: $(STAMP)
	$(BIN)/python bench/run.py

wheel-check: $(STAMP)
	bash .ci/wheel-check

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis docs/_build docs/_generated \
		tests/mermaid/node_modules \
		docs/_diagrams
