# The chaos suite's fault half (ADR 0055): the real execution service built with the chaos build tag
# (a fault hook production binaries do not carry), killed with SIGKILL at targeted points under load
# and starved of its journal (PostgreSQL stopped or SIGSTOPped, SQLite refusing writes), restarted
# and checked against the MT5 test terminal's own record. Loopback only, bounded by -timeout.
# Writes faults_injected, acked_orders_lost and orders_sent_twice into bench/results/reliability.json
# (merged: the keys other suites write stay).

TEST_TARGETS += chaos

.PHONY: chaos
chaos: ## Fault suite: kill -9 at targeted points and journal store faults; 0 acknowledged orders lost, 0 sent twice -> bench/results/reliability.json
	KAIROS_RELIABILITY_JSON=$(ROOT)/bench/results/reliability.json go test -tags chaos -race -count=1 -timeout 10m ./go/execution/chaos/...
