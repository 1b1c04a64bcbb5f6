# Execution service (issue #7): go/execution. Its Go tests run in `make test` with every Go module
# (go test -race); the PostgreSQL journal tests start a real server from Debian's postgresql package
# (initdb + pg_ctl in a temp dir) and fail, not skip, if it cannot start (KAIROS_SKIP_POSTGRES=1 skips).
APT_PACKAGES += postgresql

BENCH_TARGETS += bench-execution

# The benchmark's peer, NautilusTrader, in its own virtualenv so the project never depends on it
# (1.221.0 is the last release for Python 3.11).
NAUTILUS_VERSION := 1.221.0
NAUTILUS_VENV := $(BUILD)/nautilus-venv

$(NAUTILUS_VENV)/.installed-$(NAUTILUS_VERSION):
	python3 -m venv $(NAUTILUS_VENV)
	$(NAUTILUS_VENV)/bin/pip install --quiet nautilus_trader==$(NAUTILUS_VERSION)
	@touch $@

.PHONY: bench-execution
bench-execution: setup $(NAUTILUS_VENV)/.installed-$(NAUTILUS_VERSION) ## Benchmark the execution service beside NautilusTrader -> bench/results/execution.json
	PYTHONPATH=$(ROOT)/python $(NAUTILUS_VENV)/bin/python bench/execution_nautilus.py --ticks ../shared/data/eurusd-ticks-2020-01-01.csv --out bench/results/execution-nautilus.tmp
	go run ./go/execution/cmd/kairos-execution-bench --out bench/results/execution.json --ticks ../shared/data/eurusd-ticks-2020-01-01.csv --peer bench/results/execution-nautilus.tmp --postgres auto

.PHONY: run-execution
run-execution: setup ## Run the execution service on the paper venue with local defaults (journal in .kairos/execution.db)
	go run ./go/execution/cmd/kairos-execution serve --db .kairos/execution.db
