package service

import (
	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
)

// Reads are the calls that change nothing; --open-reads-on-loopback lets them through without the
// token from a loopback peer. Every other call (and every read by default) needs the token.
var Reads = map[string]bool{
	execv1.ExecutionService_GetOrder_FullMethodName:               true,
	execv1.ExecutionService_ListOrders_FullMethodName:             true,
	execv1.ExecutionService_ListPositions_FullMethodName:          true,
	execv1.ExecutionService_StreamExecutionReports_FullMethodName: true,
	execv1.ExecutionService_GetRiskLimits_FullMethodName:          true,
}

// Auth is the service's gRPC gate (ADR 0064): the bearer token on every call, health and
// reflection open, reads open to loopback peers only when openReadsOnLoopback. An empty token
// refuses every gated call.
func Auth(token string, openReadsOnLoopback bool) grpcauth.Policy {
	return grpcauth.Policy{Token: token, Reads: Reads, OpenReadsOnLoopback: openReadsOnLoopback}
}
