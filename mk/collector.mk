# Go collector (go/collector, issue #4). Its unit and end-to-end tests run in the shared
# `go test -race` step of `make test`; these targets add a bounded fuzz run and the benchmark.

COLLECTOR_FUZZTIME ?= 20s

TEST_TARGETS  += test-collector-fuzz
BENCH_TARGETS += bench-collector

.PHONY: test-collector-fuzz
test-collector-fuzz: ## Fuzz the collector's bridge frame decoder (20 s; COLLECTOR_FUZZTIME=...)
	cd go/collector && go test -run='^$$' -fuzz='^FuzzFrameDecoder$$' -fuzztime=$(COLLECTOR_FUZZTIME) ./bridge

.PHONY: bench-collector
bench-collector: ## Collector ingest, raw NATS and subscribe latency -> bench/results/collector.json
	@mkdir -p bench/results
	go run ./go/collector/cmd/kairos-collector-bench --out bench/results/collector.json

.PHONY: collector
collector: ## Build the collector binary into .tools/bin/kairos-collector
	go build -o $(TOOLS)/bin/kairos-collector ./go/collector/cmd/kairos-collector
