# One command each: `make demo` runs the demo, `make test` runs the tests.
# Both create .venv and install what they need on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint bench clean

$(BIN)/channelsync: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/channelsync

demo: venv
	$(BIN)/channelsync demo

test: venv
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	CHANNELSYNC_REQUIRE_PG=1 $(BIN)/python -m pytest -n 2 -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy .

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
