package app_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// The gRPC server's bounds, each against the real service on loopback: what one peer may hold is
// limited, the excess refused with a clear code, and a counter says so.

func TestLimits_ConnectionsBeyondTheMaximumAreClosedAndCounted(t *testing.T) {
	s := start(t, "", func(c *config.Config) { c.GRPC.MaxConnections = 2 })
	// The test client holds one connection once it has made a call.
	if _, err := s.Client.GetRiskLimits(context.Background(), &execv1.GetRiskLimitsRequest{}); err != nil {
		t.Fatal(err)
	}
	second, err := net.Dial("tcp", s.Ready.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	testkit.WaitFor(t, "the second connection accepted", 5*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_grpc_connections_refused_total 0")
	})

	third, err := net.Dial("tcp", s.Ready.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()

	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("third connection read: %v, want it closed by the server", err)
	}
	testkit.WaitFor(t, "the refusal counted", 5*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_grpc_connections_refused_total 1")
	})
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

func TestLimits_ReportStreamsBeyondTheMaximumAreRefused(t *testing.T) {
	s := start(t, "", func(c *config.Config) { c.GRPC.MaxReportStreams = 1 })
	ctx := authed(t)
	first, err := s.Client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{AfterSequence: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	_ = first
	testkit.WaitFor(t, "the first stream counted", 5*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_report_streams 1")
	})

	second, err := s.Client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{AfterSequence: math.MaxUint64})
	if err == nil {
		_, err = second.Recv()
	}

	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream: %v, want RESOURCE_EXHAUSTED", err)
	}
	if m := s.Metrics(); !strings.Contains(m, "kairos_execution_report_streams_refused_total 1") {
		t.Fatalf("refusal not counted:\n%s", grepLines(m, "kairos_execution_report_streams"))
	}
}

func TestLimits_AReportSubscriberFurtherBehindThanItsByteBufferIsCut(t *testing.T) {
	s := start(t, "", func(c *config.Config) { c.GRPC.ReportStreamBufferBytes = 16 })
	ctx := authed(t)
	st, err := s.Client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{AfterSequence: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the stream counted", 5*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_report_streams 1")
	})

	// Any report is larger than 16 bytes: the subscriber cannot hold one.
	if _, err := s.Client.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED, Reason: "fill the buffer"}); err != nil {
		t.Fatal(err)
	}

	if _, err := st.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("stream: %v, want RESOURCE_EXHAUSTED (cut, resume from the journal)", err)
	}
	testkit.WaitFor(t, "the cut counted", 5*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_report_streams_cut_total 1")
	})
}

func TestLimits_AMessageAboveTheReceiveLimitIsRefused(t *testing.T) {
	s := start(t, "", func(c *config.Config) { c.GRPC.MaxRecvMsgBytes = 1024 })
	req := market("big1", "buy", "0.10")
	req.ModelName = strings.Repeat("x", 2048)

	_, err := s.Client.SubmitOrder(authed(t), req)

	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized submit: %v, want RESOURCE_EXHAUSTED", err)
	}
}
