# Two commands do all set-up on a fresh machine:  `make run`  and  `make test`.
# Both build .venv from the pinned requirements.lock when it is missing or stale (exact,
# hashed: the core plus the numpyro and dev extras), then install the package itself with
# --no-deps. pyproject.toml holds ranges for `pip install socialgradient` users.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow bench lint clean cin-validator

$(STAMP): pyproject.toml requirements.lock
	@PY=$$(sh .ci/find-python) || exit 1; \
	echo "creating $(VENV) with $$PY"; \
	rm -rf $(VENV) && $$PY -m venv $(VENV) && \
	$(BIN)/pip install --quiet --upgrade pip && \
	$(BIN)/pip install --quiet -r requirements.lock && \
	$(BIN)/pip install --quiet --no-deps -e . && touch $(STAMP)

run: $(STAMP)            ## the main job: fit the national model on the embedded default data
	$(BIN)/socialgradient run

test: $(STAMP)           ## lint, then the default test suite with the wheel install (< 15 min on 2 cores)
	$(BIN)/ruff check src tests bench notebooks
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

clean:
	rm -rf $(VENV)
