# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv, installs the pinned dependencies, migrates, and starts what it needs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup constraints migrate demo test lint format simulator worker worker-wakes worker-starts \
	beat flower clean \
	bench bench-quick bench-scorecard bench-strategies bench-webhooks bench-scale-out bench-cost \
	bench-setup

setup: $(STAMP)

# The tested versions (constraints.txt) within pyproject.toml's ranges; `test` pulls in the demo
# host's, PostgreSQL's and Flower's extras.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

# Rewrite constraints.txt (keeping its header) from what .venv holds, once `make test` passed
# with it (constraints.txt's header says how to move to newer versions).
constraints:
	{ sed '/^[^#]/,$$d' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } \
		> constraints.txt.new
	mv constraints.txt.new constraints.txt

migrate: setup
	$(BIN)/python manage.py migrate --noinput -v 0

demo: migrate
	$(BIN)/python manage.py demo

test: setup lint
	$(BIN)/python -m pytest

lint: setup   # style, then the import contract (layers, no cycles: docs/architecture.md)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

simulator: setup
	$(BIN)/python -m runs_simulator --port 8765

# Consumes every queue of the project (CELERY_TASK_QUEUES: the default one and runs.starts,
# .polls, .wakes, .tools); `make worker-wakes` beside it gives wakes slots of their own
# (docs/celery.md, "Queues and routing"). Metrics on :9808/metrics (RUNS_WORKER_METRICS_PORT).
worker: migrate
	RUNS_WORKER_METRICS_PORT=$${RUNS_WORKER_METRICS_PORT:-9808} \
	$(BIN)/celery -A project worker --pool threads --concurrency 8 --loglevel INFO

worker-wakes: migrate  # wakes only: a webhook's or Poll now's poll never waits behind starts
	$(BIN)/celery -A project worker --pool threads --concurrency 2 --loglevel INFO \
		-Q $${RUNS_QUEUE_PREFIX-runs}.wakes --hostname wakes@%h

# Starts (and tools) apart, for bursts of starts on a host that also serves webhooks: chunked
# starts, at a lower CPU priority, so the web process, the wakes and the polls go first; the
# other workers then leave the starts queue out (docs/operations.md, "Production topology").
worker-starts: migrate
	RUNS_START_CHUNK=$${RUNS_START_CHUNK:-16} nice -n 10 \
	$(BIN)/celery -A project worker --pool threads --concurrency 8 --loglevel INFO \
		-Q $${RUNS_QUEUE_PREFIX-runs}.starts,$${RUNS_QUEUE_PREFIX-runs}.tools --hostname starts@%h

beat: migrate     # exactly one per deployment: it enqueues the periodic recovery sweep
	$(BIN)/celery -A project beat --loglevel INFO --schedule var/celerybeat-schedule

flower: setup     # http://127.0.0.1:5555; a run's tasks: search kwargs:run_id=42
	$(BIN)/celery -A project flower --address=127.0.0.1 --port=5555

# Benchmarks (bench/, results in docs/bench/): the `bench` extra adds matplotlib and psutil.
BENCH_STAMP := $(VENV)/.installed-bench

bench-setup: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP) pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,bench]"
	touch $(BENCH_STAMP)

bench-quick: bench-setup   # under 3 minutes: N=100, four strategies -> docs/bench/quick.json
	$(BIN)/python -m bench --quick

# Everything: issue 13's scorecard, the four strategies compared, the cost modes.
bench: bench-scorecard bench-strategies bench-cost

# Issue 13's figures in one run (N = 1,000 on both queue topologies, intake, N = 10,000, the
# start rate, two nodes vs one, RabbitMQ, the tick rate), each against a baseline from the same
# run, with the load -> docs/bench/scorecard/scorecard.{json,md} and each part's own report.
bench-scorecard: bench-setup
	$(BIN)/python -m bench.scorecard

# N = 100, 1,000, 10,000, each Celery row on both queue topologies (every worker on every queue;
# wakes and polls apart from niced, chunked starts) -> docs/bench/results.{json,md} + plots.
bench-strategies: bench-setup
	$(BIN)/python -m bench --full --topologies shared split

bench-webhooks: bench-setup  # issue 5's figures: 200 runs polled vs by webhook, intake
	$(BIN)/python -m bench --webhooks

# Two nodes vs one (Redis, RabbitMQ), 1,000 runs on RabbitMQ, tick rate -> docs/bench/scale_out.*
bench-scale-out: bench-setup
	$(BIN)/python -m bench --scale-out

# Cost per 1,000 runs and API calls per run by mode (standard, flex, 2h, 8h, Batch API), by
# webhook and by polling, on a compressed clock (RUNS_TIME_SCALE) -> docs/bench/cost_modes.*
bench-cost: bench-setup
	$(BIN)/python -m bench.cost_modes

clean:
	rm -rf $(VENV) var db.sqlite3
