# Two commands do all the setup on a new machine: `make demo` and `make test`.
# Each creates or updates .venv first; nothing else needs installing by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DAYS   ?= 7
ROWS_PER_DAY ?= 2000

.PHONY: install demo dev down test lint bench backfill screenshot clean soak

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded local stack: seed a week, materialize it through Dagster, reconcile.
demo: install
	$(BIN)/datavault-analytics stack up
	$(BIN)/datavault-analytics seed --days $(DAYS) --rows-per-day $(ROWS_PER_DAY)
	$(BIN)/datavault-analytics demo --days $(DAYS)

## Web UI and daemon on the same stack.
PORT ?= 3000
dev: install
	$(BIN)/datavault-analytics stack up
	eval "$$($(BIN)/datavault-analytics stack env)" && $(if $(AUTOMATION),DATAVAULT_AUTOMATION=$(AUTOMATION)) PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dg dev --port $(PORT)

## A range of days through Dagster, with progress, then the per-day reconciliation table:
## make backfill START=2026-10-01 END=2026-10-31 [DAYS_PER_RUN=31]
DAYS_PER_RUN ?= 31
backfill: install
	@test -n "$(START)" -a -n "$(END)" || { echo "usage: make backfill START=YYYY-MM-DD END=YYYY-MM-DD"; exit 2; }
	$(BIN)/datavault-analytics stack up
	$(BIN)/datavault-analytics backfill $(START) $(END) --days-per-run $(DAYS_PER_RUN)

## Regenerate the pictures in docs/ (lineage, check partitions, freshness) from the real daemon + webserver test.
screenshot: install
	DATAVAULT_SCREENSHOT_DIR=$(CURDIR)/docs $(BIN)/python -m pytest \
		datavault_analytics_tests/test_daemon_and_webserver.py -q

down: install
	$(BIN)/datavault-analytics stack down

## Every test but the soak over 3 processes (most of a test waits on servers and Dagster processes), then the
## soak alone: it measures liveness, so nothing else may load the machine while it runs.
test: install
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not soak"
	$(BIN)/python -m pytest -m soak

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## The benchmark (bench/run.py): one day against psql's binary COPY and dlt, a 10x day, a 30-day backfill
## through Dagster. Installs the `bench` extra (dlt), writes bench/results.md, ends with the `bench:` line.
## `make bench PART=types` runs one part alone (bench/types.py: the type matrix's day against psql);
## `make bench PART=hot_path` another (bench/hot_path.py: Retrieve during our reads, PostgreSQL on its own CPU).
bench: install
	$(BIN)/python -m pip install --quiet --editable '.[local,dev,bench]'
	$(BIN)/python -m bench.$(or $(PART),run)

clean: down
	rm -rf .datavault

## The fault soak (soak/): the whole system under a workload and a seeded nemesis, then checked for safety
## and liveness. make soak [SEED=S] [MINUTES=M]; the last line is the `soak:` summary.
MINUTES ?= 3
soak: install
	$(BIN)/python -m soak.run --minutes $(MINUTES) $(if $(SEED),--seed $(SEED),)
