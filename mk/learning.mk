# The live learning loop (issue #16): recording (ADR 0084) and shadow evaluation benchmarks. Their
# tests (python/tests/recording, python/tests/inference/test_shadow.py, marked slow where heavy) run
# with the rest of `make test`.
BENCH_TARGETS += bench-recording bench-shadow

.PHONY: bench-recording
bench-recording: setup cpp-build ## Recording benchmark: recorder vs collector ingest at 1,000,000 ticks/s and unpaced -> bench/results/recording.json
	$(PY) bench/recording.py --out bench/results/recording.json

.PHONY: bench-shadow
bench-shadow: setup ## Shadow evaluation overhead: stream latency p50 with 0 and 2 shadow models -> bench/results/shadow.json
	$(PY) bench/shadow.py --out bench/results/shadow.json
