# Recording (issue #16, ADR 0084): the recorder's benchmark. Its tests (python/tests/recording, marked
# slow) run with the rest of `make test`.
BENCH_TARGETS += bench-recording

.PHONY: bench-recording
bench-recording: setup cpp-build ## Recording benchmark: recorder vs collector ingest at 1,000,000 ticks/s and unpaced -> bench/results/recording.json
	$(PY) bench/recording.py --out bench/results/recording.json
