# Execution service (issue #7): go/execution. Its Go tests run in `make test` with every Go module
# (go test -race); the PostgreSQL journal tests start a real server from Debian's postgresql package
# (initdb + pg_ctl in a temp dir) and fail, not skip, if it cannot start (KAIROS_SKIP_POSTGRES=1 skips).
APT_PACKAGES += postgresql

BENCH_TARGETS += bench-execution

.PHONY: bench-execution
bench-execution: setup ## Benchmark the execution service (risk check, gRPC submit latency, paper lifecycle) -> bench/results/execution.json
	go run ./go/execution/cmd/kairos-execution-bench --out bench/results/execution.json --ticks ../shared/data/eurusd-ticks-2020-01-01.csv

.PHONY: run-execution
run-execution: setup ## Run the execution service on the paper venue with local defaults (journal in .kairos/execution.db)
	go run ./go/execution/cmd/kairos-execution serve --db .kairos/execution.db
