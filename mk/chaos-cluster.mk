# The fault suite's cluster half (issue "no fault loses an acknowledged order/tick"): real processes
# on loopback, kill -9 mid-replay. A 3-node NATS JetStream cluster loses its stream leader while the
# collector (--nats-jetstream) takes real ticks from the bridge; the collector itself is killed
# mid-replay (after its JetStream server, with its state file) and restarted; an inference replica
# dies while the collector streams to two. Tests in python/tests/chaos (each scenario bounded, well
# under a minute). Merges acked_ticks_lost, ticks_duplicated (totals over the tick scenarios),
# cluster_node_kills, collector_kills, inference_replica_kills and faults_injected_cluster into
# bench/results/reliability.json (other suites' keys stay).

# `make chaos` runs it (and so does `make test`, through chaos).

.PHONY: chaos-cluster
chaos-cluster: setup cpp-build ## Fault suite, cluster half: NATS node, collector and inference replica kill -9 mid-replay -> bench/results/reliability.json
	KAIROS_CHAOS=1 KAIROS_RELIABILITY_JSON=$(ROOT)/bench/results/reliability.json timeout 600 $(PY) -m pytest -q python/tests/chaos
