# legacy-gateway: install, serve, check.  `make help` lists the targets.
#
# Everything runs from a virtualenv that the stamp below (re)creates when setup.cfg or
# pyproject.toml change, so a clean clone needs only python3 and make.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make run` settings (the same variables gunicorn.conf.py reads).
GATEWAY_MAP ?= redirects.yaml
GATEWAY_BIND ?= 127.0.0.1:8080

.PHONY: all install run test lint typecheck fmt bench bench-front bench-archive fuzz clean help

# The first target is the default: check everything, destroy nothing.
all: test ## the default: same as make test

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP) ## create the virtualenv and install the project with its dev tools

run: $(STAMP) ## serve GATEWAY_MAP (redirects.yaml) on GATEWAY_BIND (127.0.0.1:8080)
	GATEWAY_MAP='$(GATEWAY_MAP)' GATEWAY_BIND='$(GATEWAY_BIND)' \
		exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: lint typecheck ## lint, type-check, then run the test suite
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy (strict) on the gateway package
	$(BIN)/mypy

fmt: $(STAMP) ## format and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# 100k- and 1M-rule maps, compiled tables included: about 7 minutes on 2 cores.
# make bench BENCH_ARGS=--quick for a smoke run (10k/30k rules, under a minute);
# --matrix also compares gunicorn settings; --sizes 100000 for one map size only.
BENCH_ARGS ?=
bench: $(STAMP) ## the benchmarks at 100k and 1M rules: wrk vs bare WSGI and nginx, compile, start, memory, micro
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# BENCH_FRONT_ARGS, e.g. --duration 10; needs nginx (and wrk for its last figure).
BENCH_FRONT_ARGS ?=
bench-front: $(STAMP) ## the standalone nginx front under 3,700 slow/idle connections, 2,000-conn load
	$(BIN)/python bench/front.py $(BENCH_FRONT_ARGS)

# BENCH_ARCHIVE_ARGS, e.g. --captures 20000 --pdf-mb 10 for a quicker run; about 30 s as is.
BENCH_ARCHIVE_ARGS ?=
bench-archive: $(STAMP) ## web archive figures: a 100k-capture WARC's index, worker start, memory, answers
	$(BIN)/python bench/archive.py $(BENCH_ARCHIVE_ARGS)

# FUZZ_TIME (s per harness, default 120), HYPOTHESIS_MAX_EXAMPLES (10000), FAULT_REWRITES (100).
fuzz: $(STAMP) ## atheris fuzzers, properties at 10000 examples, full fault injection
	VENV='$(VENV)' ./fuzz/run.sh

clean: ## remove the virtualenv, caches and build output
	rm -rf '$(VENV)' build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis \
		bench/out fuzz/corpus-tmp
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN { FS = ":.*## " } { printf "  make %-12s %s\n", $$1, $$2 }'
