# Go collector (go/collector, issue #4). Its unit and end-to-end tests run in the shared
# `go test -race` step of `make test`; these targets add a bounded fuzz run and the benchmark.

# An execution count, not a duration: Go 1.26's fuzz coordinator can report a spurious "context
# deadline exceeded" when a duration ends while a starved worker is mid-call (golang/go#75804, fixed
# in Go 1.27); a count has no deadline to race. 100,000 inputs take 2-10 s idle, ~1 min under load.
COLLECTOR_FUZZTIME ?= 100000x

TEST_TARGETS  += test-collector-fuzz
BENCH_TARGETS += bench-collector

.PHONY: test-collector-fuzz
test-collector-fuzz: ## Fuzz the collector's bridge frame decoder (100,000 inputs; COLLECTOR_FUZZTIME=...)
	cd go/collector && go test -run='^$$' -fuzz='^FuzzFrameDecoder$$' -fuzztime=$(COLLECTOR_FUZZTIME) ./bridge

.PHONY: bench-collector
bench-collector: ## Collector ingest, raw NATS and subscribe latency -> bench/results/collector.json
	@mkdir -p bench/results
	go run ./go/collector/cmd/kairos-collector-bench --out bench/results/collector.json

.PHONY: collector
collector: ## Build the collector binary into .tools/bin/kairos-collector
	go build -o $(TOOLS)/bin/kairos-collector ./go/collector/cmd/kairos-collector
