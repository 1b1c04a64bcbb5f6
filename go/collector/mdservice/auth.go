package mdservice

import (
	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
)

// Reads are the calls that only read; --open-reads-on-loopback lets them through without the
// token from a loopback peer. Publish and Stream carry market data in, so they always need it:
// a quote accepted here reaches execution's prices and inference's features.
var Reads = map[string]bool{
	collectorv1.MarketDataService_Subscribe_FullMethodName:   true,
	collectorv1.MarketDataService_ListSymbols_FullMethodName: true,
}

// Auth is the service's gRPC gate (ADR 0064): the bearer token on every call, health and
// reflection open, reads open to loopback peers only when openReadsOnLoopback. An empty token
// refuses every gated call.
func Auth(token string, openReadsOnLoopback bool) grpcauth.Policy {
	return grpcauth.Policy{Token: token, Reads: Reads, OpenReadsOnLoopback: openReadsOnLoopback}
}
