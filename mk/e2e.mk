# End to end (issue #8): the demo's stack, replay and benchmark. The e2e and grpcurl tests are in
# python/tests/e2e (pytest, marked slow) and run with the rest of `make test`.
BENCH_TARGETS += bench-e2e

.PHONY: bench-e2e
bench-e2e: setup cpp-build ## End-to-end benchmark: tick → order ack latency at 2,000 ticks/s, full-speed replay; median of 3 runs, prints the hop table
	$(PY) bench/e2e.py --out bench/results/e2e.json $(E2E_VARIANTS)

# Measured in the same rounds as e2e.json, interleaved (bench/e2e.py --variant): the rehearsal's share
# (ADR 0121), the CPU layout's (ADR 0122), kairos up --idle-spin (ADR 0123), and e2e-control, the base
# configuration again: its vs_base.* is what the pairing gives two identical stacks, the noise floor
# the other variants' differences are read against.
E2E_VARIANTS := --variant 'e2e-no-keep-warm=--keep-warm 0' --variant 'e2e-unpinned=--cpu-affinity none' \
	--variant 'e2e-idle-spin=--idle-spin' --variant 'e2e-control='

# The latency benchmarks again on a host tuned for latency (ADR 0117): every CPU's wake-up latency
# held at 0 µs (PM QoS, /dev/cpu_dma_latency, root) while each runs, so idle CPUs poll instead of
# halting; the e2e run once more with the inference server alone on CPU 1 and the rest on CPU 0,
# then with that layout and the request path kept warm (--keep-warm 5ms, ADR 0118: e2e-tuned.json;
# the first two without it, --keep-warm 0, though kairos up rehearses by default since ADR 0121, and
# the first unpinned, --cpu-affinity none, though kairos up pins by default since ADR 0122),
# and inference's latency phase with its server on CPU 1 and the client on CPU 0.
# Beside the default figures, never instead of them: results in bench/results/*-held*.json and
# bench/results/e2e-tuned.json.
BENCH_TARGETS += bench-held
HOLD_CPU_LATENCY := $(PY) -m kairos.stack.cpu_latency --us 0 --

.PHONY: bench-held
bench-held: setup cpp-build ## e2e, inference and execution benchmarks with the CPUs' wake-up latency held at 0 µs -> bench/results/*-held*.json, e2e-tuned.json
	$(HOLD_CPU_LATENCY) $(PY) bench/e2e.py --keep-warm 0 --cpu-affinity none --out bench/results/e2e-held.json \
		--variant 'e2e-held-pinned=--cpu-affinity inference=1 --cpu-affinity *=0' \
		--variant 'e2e-tuned=--cpu-affinity inference=1 --cpu-affinity *=0 --keep-warm 5ms'
	$(HOLD_CPU_LATENCY) $(PY) bench/inference.py --latency-server-cpus 1 --out bench/results/inference-held.json
	$(HOLD_CPU_LATENCY) go run ./go/execution/cmd/kairos-execution-bench --out bench/results/execution-held.json --ticks ../shared/data/eurusd-ticks-2020-01-01.csv --postgres auto
