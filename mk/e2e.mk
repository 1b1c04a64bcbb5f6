# End to end (issue #8): the demo's stack, replay and benchmark. The e2e and grpcurl tests are in
# python/tests/e2e (pytest, marked slow) and run with the rest of `make test`.
BENCH_TARGETS += bench-e2e

.PHONY: bench-e2e
bench-e2e: setup cpp-build ## End-to-end benchmark: tick → order ack latency at 2,000 ticks/s, full-speed replay; median of 3 runs, prints the hop table
	$(PY) bench/e2e.py --out bench/results/e2e.json
