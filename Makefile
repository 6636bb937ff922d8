# Two commands do all set-up on a fresh machine:  `make run`  and  `make test`.
# Both build .venv from the pinned requirements.lock when it is missing or stale (exact,
# hashed: the core plus the numpyro and dev extras), then install the package itself with
# --no-deps, and compile the default models into the compilation caches (`socialgradient
# warm`). pyproject.toml holds ranges for `pip install socialgradient` users.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow bench lint clean cin-validator docs

$(STAMP): pyproject.toml requirements.lock
	@PY=$$(sh .ci/find-python) || exit 1; \
	echo "creating $(VENV) with $$PY"; \
	rm -rf $(VENV) && $$PY -m venv $(VENV) && \
	$(BIN)/pip install --quiet --upgrade pip && \
	$(BIN)/pip install --quiet -r requirements.lock && \
	$(BIN)/pip install --quiet --no-deps -e . && touch $(STAMP)
	@# compile the default specs' models into the caches a fit reads (bench/cold_start.md);
	@# a cache that cannot be written is skipped, and a failure costs only the first fit's time
	-$(BIN)/socialgradient warm

run: $(STAMP)            ## the main job: fit the national model on the embedded default data
	$(BIN)/socialgradient run

test: $(STAMP)           ## lint, format, types, the docs site (-W), then the default test suite
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(MAKE) docs
	$(BIN)/python -m pytest

test-slow: $(STAMP)      ## full-size statistical checks
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python bench/run.py

cin-validator:           ## .venv-cin: the DfE CIN validation rules (csc-validator-be-cin, pinned, hashed) for tests/test_cin_rules_validator.py
	rm -rf .venv-cin && python3.11 -m venv .venv-cin && \
	.venv-cin/bin/pip install --quiet --require-hashes -r bench/cin_validator/requirements.lock

lint: $(STAMP)
	$(BIN)/ruff check src tests bench notebooks
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# The documentation site (docs/, Sphinx + myst-nb + numpydoc), offline once .venv-docs exists:
# its own venv from docs/requirements.lock (hashed; the docs tools plus the runtime pins of
# requirements.lock), the package from src/ on PYTHONPATH (no install, no build step), warnings
# as errors. Tables and numbers are generated from the committed result files (bench/) at build
# time (docs/_ext/sgdocs.py); notebooks are the committed executions in docs/notebooks/.
DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed

$(DOCS_STAMP): docs/requirements.lock
	@PY=$$(sh .ci/find-python) || exit 1; \
	echo "creating $(DOCS_VENV) with $$PY"; \
	rm -rf $(DOCS_VENV) && $$PY -m venv $(DOCS_VENV) && \
	$(DOCS_VENV)/bin/pip install --quiet --require-hashes -r docs/requirements.lock && \
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)      ## the documentation site into docs/_build/html (warnings are errors)
	rm -rf docs/_build docs/_generated
	PYTHONPATH=$(CURDIR)/src MPLBACKEND=Agg PYTHONHASHSEED=0 \
	  $(DOCS_VENV)/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV)
