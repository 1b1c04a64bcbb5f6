// Package collector will hold the Kairos market-data collector (issue #4): it ingests ticks from the
// MT5 bridge (kairos.bridge.v1 frames over TCP) and from gRPC publishers, validates them, builds bars,
// streams tick batches to the inference server (kairos.inference.v1 StreamPredict), serves
// kairos.collector.v1 MarketDataService and fans market data out on NATS.
//
// Only the module exists so far, so that go.work, `make lint` and `make test` already cover it.
package collector
