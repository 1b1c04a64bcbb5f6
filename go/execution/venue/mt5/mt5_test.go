package mt5_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/execution/internal/bridgepeer"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
)

type rig struct {
	s    *svctest.Svc
	term *bridgepeer.Terminal
	peer *bridgepeer.Peer
}

// newRig starts the service on the MT5 venue with real NATS ticks, and a bridge peer in front of a
// simulated terminal (not yet connected).
func newRig(t *testing.T, extra ...string) *rig {
	ns := testutil.NATS(t)
	args := append([]string{"--venue", "mt5", "--bridge-addr", "127.0.0.1:0", "--heartbeat-interval", "200ms", "--duplicate-intent-window-ms", "0"}, extra...)
	s := svctest.Start(t, ns.ClientURL(), nil, args...)
	s.PublishTicks(testutil.EURUSDTicks(t, 20))
	s.WaitQuote()
	term := bridgepeer.NewTerminal(svctest.Dec("1.12345"))
	r := &rig{s: s, term: term, peer: bridgepeer.New(term, 77)}
	t.Cleanup(r.peer.Close)
	return r
}

func (r *rig) connect(t *testing.T) *bridgev1.Welcome {
	t.Helper()
	w, err := r.peer.Connect(r.s.Ready.BridgeAddr)
	if err != nil {
		t.Fatal(err)
	}
	r.waitState(t, execv1.TradingState_TRADING_STATE_ACTIVE, "1")
	return w
}

func (r *rig) waitState(t *testing.T, st execv1.TradingState, reconciled string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "trading state "+st.String()+" reconciled="+reconciled, func() bool {
		m := r.s.Metrics()
		return strings.Contains(m, fmt.Sprintf("kairos_execution_trading_state %d\n", st)) && strings.Contains(m, "kairos_execution_reconciled "+reconciled+"\n")
	})
}

func (r *rig) status(t *testing.T, id string) *execv1.Order {
	t.Helper()
	g, err := r.s.Client.GetOrder(svctest.Authed(t), &execv1.GetOrderRequest{ClientOrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	return g.GetOrder()
}

func (r *rig) waitStatus(t *testing.T, id string, want execv1.OrderStatus) *execv1.Order {
	t.Helper()
	var o *execv1.Order
	testutil.Eventually(t, 10*time.Second, id+" to become "+want.String(), func() bool {
		o = r.status(t, id)
		return o.GetStatus() == want
	})
	return o
}

func TestTradingWaitsForTheBridgeAndItsSnapshot(t *testing.T) {
	r := newRig(t)
	res, err := r.s.Client.SubmitOrder(svctest.Authed(t), svctest.Market("early", "buy", "0.10"))
	if err != nil || res.GetOrder().GetDenial().GetReason() != execv1.RiskDenyReason_RISK_DENY_REASON_NOT_RECONCILED {
		t.Fatalf("before the bridge: %v %v", res, err)
	}
	_, err = r.s.Client.SetTradingState(svctest.Authed(t), &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_ACTIVE})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ACTIVE before reconciliation: %v, want FAILED_PRECONDITION", err)
	}
	w := r.connect(t)
	if w.GetResumeAfter() != 0 || w.GetHeartbeatIntervalMs() != 200 || !strings.HasPrefix(w.GetServerVersion(), "kairos-execution") {
		t.Fatalf("welcome %v", w)
	}
	r.peer.Close()
	r.waitState(t, execv1.TradingState_TRADING_STATE_ACTIVE, "0")
	res, err = r.s.Client.SubmitOrder(svctest.Authed(t), svctest.Market("lost", "buy", "0.10"))
	if err != nil || res.GetOrder().GetDenial().GetReason() != execv1.RiskDenyReason_RISK_DENY_REASON_NOT_RECONCILED {
		t.Fatalf("after the link dropped: %v %v", res, err)
	}
}

func TestMarketOrderIsPlacedOnceFilledAndAcknowledged(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	res, err := r.s.Client.SubmitOrder(svctest.Authed(t), svctest.Market("m1", "buy", "0.20"))
	if err != nil || res.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED {
		t.Fatalf("submit: %v %v", res, err)
	}
	o := r.waitStatus(t, "m1", execv1.OrderStatus_ORDER_STATUS_FILLED)
	if o.GetAvgFillPrice().GetUnits() != 112345 || o.GetVenueOrderId() == "" {
		t.Fatalf("fill: %v", o)
	}
	testutil.Eventually(t, 5*time.Second, "the service to acknowledge every frame", func() bool { return r.peer.Unacked() == 0 })
	if n := r.term.Placed()["m1"]; n != 1 {
		t.Fatalf("placed %d times", n)
	}
	// The deal arrived twice (OrderResult and DEAL_ADD transaction): its quantity applied once, the
	// commission only the transaction carries kept.
	if m := r.s.Metrics(); !strings.Contains(m, "kairos_execution_duplicate_fills_total 1") {
		t.Fatalf("duplicate deal not counted:\n%s", m)
	}
	pos, _ := r.s.Client.ListPositions(svctest.Authed(t), &execv1.ListPositionsRequest{})
	if len(pos.GetPositions()) != 1 || pos.GetPositions()[0].GetNetQuantity().GetUnits() != 20 || !sameDec(pos.GetPositions()[0].GetRealizedPnl(), -350, 2) {
		t.Fatalf("positions %v, want 0.20 with the deal's commission 3.50 in realized P&L", pos)
	}
}

func TestAmbiguousResultsAreResolvedByQueryNotGuessed(t *testing.T) {
	cases := []struct {
		name     string
		retcode  int32
		executed bool
		want     execv1.OrderStatus
	}{
		{"timeout after the trade server filled it", 10012, true, execv1.OrderStatus_ORDER_STATUS_FILLED},
		{"disconnected before the request left", -11, false, execv1.OrderStatus_ORDER_STATUS_REJECTED},
		{"disconnected after the trade server filled it", -11, true, execv1.OrderStatus_ORDER_STATUS_FILLED},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			first := true
			ambiguous := func(cmd *bridgev1.OrderCommand) *bridgev1.OrderResult {
				return &bridgev1.OrderResult{CommandId: cmd.GetCommandId(), ClientOrderId: cmd.GetClientOrderId(), Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT, Retcode: c.retcode}
			}
			if c.executed {
				r.term.After = func(cmd *bridgev1.OrderCommand, res *bridgev1.OrderResult) (*bridgev1.OrderResult, bool) {
					if cmd.GetKind() == bridgev1.CommandKind_COMMAND_KIND_PLACE && first {
						first = false
						return ambiguous(cmd), false
					}
					return nil, false
				}
			} else {
				r.term.Before = func(cmd *bridgev1.OrderCommand) *bridgev1.OrderResult {
					if cmd.GetKind() == bridgev1.CommandKind_COMMAND_KIND_PLACE {
						return ambiguous(cmd)
					}
					return nil
				}
			}
			r.connect(t)
			if _, err := r.s.Client.SubmitOrder(svctest.Authed(t), svctest.Market("a1", "buy", "0.10")); err != nil {
				t.Fatal(err)
			}
			o := r.waitStatus(t, "a1", c.want)
			if c.want == execv1.OrderStatus_ORDER_STATUS_REJECTED && !strings.Contains(o.GetRejectReason(), "no trace") {
				t.Fatalf("reject reason %q", o.GetRejectReason())
			}
			if !strings.Contains(r.s.Metrics(), "kairos_execution_ambiguous_results_total 1") {
				t.Fatal("ambiguous result not counted")
			}
			if n := r.term.Placed()["a1"]; c.executed && n != 1 || !c.executed && n != 0 {
				t.Fatalf("placed %d times", n)
			}
		})
	}
}

func TestDefiniteRejectsAndRequotes(t *testing.T) {
	r := newRig(t)
	requotes := 0
	r.term.Before = func(cmd *bridgev1.OrderCommand) *bridgev1.OrderResult {
		switch {
		case cmd.GetClientOrderId() == "nomoney":
			return &bridgev1.OrderResult{CommandId: cmd.GetCommandId(), ClientOrderId: cmd.GetClientOrderId(), Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT, Retcode: 10019, Comment: "No money"}
		case cmd.GetClientOrderId() == "requote" && requotes == 0:
			requotes++
			return &bridgev1.OrderResult{CommandId: cmd.GetCommandId(), ClientOrderId: cmd.GetClientOrderId(), Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT, Retcode: 10004}
		}
		return nil
	}
	r.connect(t)
	for _, id := range []string{"nomoney", "requote"} {
		if _, err := r.s.Client.SubmitOrder(svctest.Authed(t), svctest.Market(id, "buy", "0.10")); err != nil {
			t.Fatal(err)
		}
	}
	o := r.waitStatus(t, "nomoney", execv1.OrderStatus_ORDER_STATUS_REJECTED)
	if !strings.Contains(o.GetRejectReason(), "10019 NO_MONEY") {
		t.Fatalf("reject reason %q", o.GetRejectReason())
	}
	r.waitStatus(t, "requote", execv1.OrderStatus_ORDER_STATUS_FILLED)
	if n := r.term.Placed()["requote"]; n != 1 {
		t.Fatalf("requoted order executed %d times", n)
	}
}

func TestLimitOrderRestsAndCancels(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	ctx := svctest.Authed(t)
	if _, err := r.s.Client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: "l1", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: svctest.Dec("1.11000"), Quantity: svctest.Dec("0.10")}); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, "l1", execv1.OrderStatus_ORDER_STATUS_ACCEPTED)
	c, err := r.s.Client.CancelOrder(ctx, &execv1.CancelOrderRequest{ClientOrderId: "l1"})
	if err != nil || c.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_PENDING_CANCEL {
		t.Fatalf("cancel: %v %v", c, err)
	}
	r.waitStatus(t, "l1", execv1.OrderStatus_ORDER_STATUS_CANCELED)
	if o, _ := r.term.Order("l1"); !o.Canceled {
		t.Fatal("terminal still works the order")
	}
}

func TestResentFramesAreDroppedAndCounted(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	if _, err := r.s.Client.SubmitOrder(svctest.Authed(t), svctest.Market("d1", "buy", "0.10")); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, "d1", execv1.OrderStatus_ORDER_STATUS_FILLED)
	// Replay the first numbered frame: the service has processed it and must drop it.
	if err := r.peer.SendNumbered(&bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{}}}, 1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the duplicate frame to be counted", func() bool {
		return strings.Contains(r.s.Metrics(), `kairos_bridge_duplicate_frames_total{channel="trading"} 1`)
	})
}

func TestMalformedAndOversizedFramesCloseTheConnection(t *testing.T) {
	cases := []struct {
		name  string
		bytes func() []byte
		want  string
	}{
		{"frame above 1 MiB", func() []byte { return binary.AppendUvarint(nil, 2<<20) }, `kairos_bridge_frame_errors_total{channel="trading",reason="oversized"} 1`},
		{"not a protobuf", func() []byte { return append(binary.AppendUvarint(nil, 3), 0xff, 0xff, 0xff) }, `kairos_bridge_frame_errors_total{channel="trading",reason="malformed"} 1`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.connect(t)
			if err := r.peer.SendRaw(c.bytes()); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the connection to close", func() bool { return !r.peer.Connected() })
			if m := r.s.Metrics(); !strings.Contains(m, c.want) {
				t.Fatalf("metrics lack %s", c.want)
			}
		})
	}
}

func TestHelloMustComeFirstOnTheTradingChannel(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		name  string
		frame *bridgev1.Frame
		code  bridgev1.ErrorCode
	}{
		{"heartbeat first", &bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{}}}, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION},
		{"market data channel", &bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: 1, Channel: bridgev1.Channel_CHANNEL_MARKET_DATA}}}, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION},
		{"future api version", &bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: 99, Channel: bridgev1.Channel_CHANNEL_TRADING}}}, bridgev1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION},
		// A raw client without the bridge key gets no Welcome, so it can neither take commands nor report fills.
		{"no key proof", &bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: bridgelink.APIVersion, Channel: bridgev1.Channel_CHANNEL_TRADING, SessionId: 5}}},
			bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
	} {
		t.Run(c.name, func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", r.s.Ready.BridgeAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := protodelim.MarshalTo(nc, c.frame); err != nil {
				t.Fatal(err)
			}
			f := &bridgev1.Frame{}
			for f.GetError() == nil { // after the server's Challenge
				if err := protodelim.UnmarshalFrom(bufReader{nc}, f); err != nil {
					t.Fatal(err)
				}
				if f.GetWelcome() != nil {
					t.Fatalf("welcomed: %v", f)
				}
			}
			if f.GetError().GetCode() != c.code {
				t.Fatalf("answer %v, want error %v", f, c.code)
			}
		})
	}
}

type bufReader struct{ net.Conn }

func (b bufReader) ReadByte() (byte, error) {
	var p [1]byte
	_, err := b.Read(p[:])
	return p[0], err
}

func TestReconnectKeepsTheSessionAndCancelOnDisconnectCancelsWorkingOrders(t *testing.T) {
	r := newRig(t, "--mt5-cancel-on-disconnect")
	r.connect(t)
	ctx := svctest.Authed(t)
	if _, err := r.s.Client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: "rest", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: svctest.Dec("1.11000"), Quantity: svctest.Dec("0.10")}); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, "rest", execv1.OrderStatus_ORDER_STATUS_ACCEPTED)
	testutil.Eventually(t, 5*time.Second, "the service to acknowledge every frame", func() bool { return r.peer.Unacked() == 0 })
	r.peer.Close()
	r.waitState(t, execv1.TradingState_TRADING_STATE_ACTIVE, "0")
	w, err := r.peer.Connect(r.s.Ready.BridgeAddr)
	if err != nil {
		t.Fatal(err)
	}
	if w.GetResumeAfter() == 0 {
		t.Fatal("resume_after is 0 for a known session")
	}
	r.waitStatus(t, "rest", execv1.OrderStatus_ORDER_STATUS_CANCELED)
	if o, _ := r.term.Order("rest"); !o.Canceled {
		t.Fatal("the terminal still works the order")
	}
}
