# Nudge — `make help` lists the targets. The two that matter: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# setup.py compiles the engine with mypyc: a change to its sources installs (compiles) again.
COMPILED_SOURCES := setup.py service/nudge/codec.py $(wildcard service/nudge/journeys/*.py)
NUDGE_COMPILE ?= 1
STAMP := $(VENV)/.installed-$(shell (cat requirements.lock pyproject.toml $(COMPILED_SOURCES); echo $(NUDGE_COMPILE)) | cksum | cut -d' ' -f1)
WITH_KAFKA := deploy/local/with-kafka.sh

.PHONY: help install kafka kafka-stop run test test-unit test-integration lint format typecheck \
        check-deploy bench bench-engine bench-processor bench-handler bench-sender bench-e2e chaos demo-events clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.lock pyproject.toml $(COMPILED_SOURCES)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found " + sys.version.split()[0] + ")")'
	@echo "installing the Python environment into $(VENV) (locked versions: requirements.lock)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip uv
	@$(BIN)/uv pip install -q -p $(BIN)/python -r requirements.lock
	@if [ "$(NUDGE_COMPILE)" = 0 ]; then \
	  echo "NUDGE_COMPILE=0: the journey engine runs interpreted (compiled modules removed)"; \
	  find service -name '*.so' -delete; \
	else echo "compiling the journey engine with mypyc (setup.py; NUDGE_COMPILE=0 skips it)"; fi
	@NUDGE_COMPILE=$(NUDGE_COMPILE) $(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install the locked dependencies

kafka: ## fetch (first time) and start the local Kafka broker on 127.0.0.1:9092
	@deploy/local/kafka.sh start

kafka-stop: ## stop the local Kafka broker started by `make kafka`
	@deploy/local/kafka.sh stop

run: install ## the demo: Kafka, SMTP sink, processor, sender, demo events; Ctrl-C stops all
	@deploy/local/run-demo.sh

test: install lint typecheck check-deploy ## lint, typecheck, unit and integration tests (starts and stops Kafka)
	@$(WITH_KAFKA) $(BIN)/pytest -q -p no:cacheprovider tests

test-unit: install ## unit tests only (no Kafka)
	@$(BIN)/pytest -q tests/unit

test-integration: install ## integration tests against the real Kafka and SMTP servers
	@$(WITH_KAFKA) $(BIN)/pytest -q tests/integration

lint: install ## ruff lint and format check
	@$(BIN)/ruff check service tests deploy bench chaos
	@$(BIN)/ruff format --check service tests deploy bench chaos

format: install ## apply ruff's formatting and safe fixes
	@$(BIN)/ruff format service tests deploy bench chaos
	@$(BIN)/ruff check --fix service tests deploy bench chaos

typecheck: install ## mypy (strict) on service/
	@$(BIN)/mypy

check-deploy: install ## check Dockerfile, compose, Prometheus rules, dashboard, Helm chart (tools: .cache/tools)
	@deploy/checks/check-deploy.sh

bench-engine: install ## nudge simulate over 1M events / 100k users: events/s, peak memory, state bytes (results/engine.json)
	@$(BIN)/python bench/bench_engine.py

bench-processor: install ## events/s of one processor vs a plain aiokafka loop, timer burst lag, recovery (results/processor.json)
	@$(WITH_KAFKA) $(BIN)/python bench/bench_processor.py

bench-handler: install ## the processor's handler + engine in process, no Kafka: the worker's upper bound (results/handler.json)
	@$(BIN)/python bench/bench_handler.py

bench-sender: install ## mails/s: one sender process vs a naive loop vs the sink's ceiling (results/sender.json)
	@$(WITH_KAFKA) $(BIN)/python bench/bench_sender.py

bench-e2e: install ## order → mail accepted p50/p95/p99 at 250, 500 and 1,000 events/s vs raw Kafka (results/e2e.json)
	@$(WITH_KAFKA) $(BIN)/python bench/bench_e2e.py

bench: install ## every benchmark, then results/bench.json and a table of figures vs same-run baselines
	@$(BIN)/python bench/run_all.py

chaos: install ## 100k events under SIGKILLs, SMTP outage/4xx, broker restart, bad input; PASS/FAIL (results/chaos.json)
	@$(BIN)/python -m chaos.run --preset full

demo-events: install ## write a synthetic event log to out/events.jsonl
	@mkdir -p out && $(BIN)/nudge generate-events --users 1000 --days 60 --out out/events.jsonl

clean: ## remove the virtualenv, caches and local Kafka data
	@deploy/local/kafka.sh stop || true
	rm -rf $(VENV) .cache out .mypy_cache .ruff_cache .pytest_cache .hypothesis build
	find service -name '*.so' -delete
