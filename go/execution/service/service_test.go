package service_test

// The service runs for real: an engine on the paper venue and the in-memory journal behind a gRPC
// server on a loopback port, with the same interceptors as the process, and a real client.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/service"
	"github.com/kairos-mt5/kairos/go/execution/venue/paper"
	"github.com/kairos-mt5/kairos/go/testkit"
)

const token = "s3cret-token"

func dec(s string) decimal.D { return decimal.MustParse(s) }

var eurusd = market.Instrument{Symbol: "EURUSD", Digits: 5, VolumeStep: dec("0.01"), VolumeMin: dec("0.01"), ContractSize: dec("100000"), QuoteToAccount: dec("1")}

// failingStore is an in-memory journal store whose appends fail once the test says so.
type failingStore struct {
	*journal.Memory
	failing atomic.Bool
}

func (s *failingStore) Append(ctx context.Context, entries []journal.Entry) error {
	if s.failing.Load() {
		return errors.New("disk full at /var/lib/kairos")
	}
	return s.Memory.Append(ctx, entries)
}

type server struct {
	client execv1.ExecutionServiceClient
	eng    *engine.Engine
	jr     *journal.Journal
	store  *failingStore
	now    *atomic.Int64
	m      *metrics.Metrics
}

type config struct {
	token string
	// openReads is --open-reads-on-loopback.
	openReads bool
	limits    risk.Limits
	// maxOrders is the engine's MaxOrders (0: its default).
	maxOrders int
	// clientOpts are extra dial options (a small flow-control window for slow readers).
	clientOpts []grpc.DialOption
}

// start runs the service on 127.0.0.1:0; it stops at the end of the test.
func start(t *testing.T, cfg config) *server {
	t.Helper()
	ctx := context.Background()
	s := &server{store: &failingStore{Memory: journal.NewMemory()}, now: &atomic.Int64{}, m: metrics.New()}
	s.now.Store(time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC).UnixMicro())
	jr, err := journal.New(ctx, s.store)
	if err != nil {
		t.Fatal(err)
	}
	book := portfolio.NewBook()
	insts := []market.Instrument{eurusd}
	eng := engine.New(engine.Options{Risk: risk.New(cfg.limits, insts, book), Book: book, Journal: jr, Currency: "USD",
		Venue: paper.New(paper.Config{StartingBalance: dec("10000"), Currency: "USD"}, insts), Logger: slog.New(slog.DiscardHandler), Clock: s.now.Load, Metrics: s.m, MaxOrders: cfg.maxOrders})
	if _, err := eng.Replay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := eng.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	s.eng, s.jr = eng, jr

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(service.Auth(cfg.token, cfg.openReads).ServerOptions()...)
	execv1.RegisterExecutionServiceServer(gs, service.New(eng, jr))
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, cfg.clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.client = execv1.NewExecutionServiceClient(cc)
	t.Cleanup(func() {
		_ = cc.Close()
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		eng.Close()
		_ = jr.Close()
	})
	return s
}

// authed is a context with the bearer token, bounded for the test.
func authed(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(testkit.Context(t, 20*time.Second), "authorization", "Bearer "+token)
}

func (s *server) quote(t *testing.T, bid, ask string) {
	t.Helper()
	if err := s.eng.OnQuote(market.Quote{Symbol: "EURUSD", Bid: dec(bid), Ask: dec(ask), TimeUS: s.now.Load()}); err != nil {
		t.Fatal(err)
	}
}

func limit(id, price string) *execv1.SubmitOrderRequest {
	return &execv1.SubmitOrderRequest{ClientOrderId: id, Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Quantity: dec("0.10").Proto(), Price: dec(price).Proto(), StrategyId: "test"}
}

func marketBuy(id string) *execv1.SubmitOrderRequest {
	return &execv1.SubmitOrderRequest{ClientOrderId: id, Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_MARKET, Quantity: dec("0.10").Proto(), StrategyId: "test"}
}

// errorInfo returns the ErrorInfo detail of err, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// violations returns the fields of the BadRequest detail of err.
func violations(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func TestAuth_EveryCallNeedsTheBearerToken(t *testing.T) {
	type call func(ctx context.Context, c execv1.ExecutionServiceClient) error
	submit := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.SubmitOrder(ctx, limit("a1", "1.10000"))
		return err
	}
	cancelAll := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.CancelAll(ctx, &execv1.CancelAllRequest{})
		return err
	}
	halt := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED})
		return err
	}
	cancel := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.CancelOrder(ctx, &execv1.CancelOrderRequest{ClientOrderId: "a1"})
		return err
	}
	list := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.ListOrders(ctx, &execv1.ListOrdersRequest{})
		return err
	}
	limits := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.GetRiskLimits(ctx, &execv1.GetRiskLimitsRequest{})
		return err
	}
	stream := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := c.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{})
		if err == nil {
			_, err = st.Recv() // the reconciliation's state change, or the refusal
		}
		return err
	}
	withHeader := func(v string) context.Context {
		return metadata.AppendToOutgoingContext(testkit.Context(t, 20*time.Second), "authorization", v)
	}
	positions := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.ListPositions(ctx, &execv1.ListPositionsRequest{})
		return err
	}
	getOrder := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "a1"})
		if status.Code(err) == codes.NotFound {
			return nil // authenticated, and there is no such order
		}
		return err
	}
	none := func() context.Context { return testkit.Context(t, 20*time.Second) }
	modifyOrder := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.ModifyOrder(ctx, &execv1.ModifyOrderRequest{ClientOrderId: "a1", Price: dec("1.1").Proto()})
		return err
	}
	modifyPosition := func(ctx context.Context, c execv1.ExecutionServiceClient) error {
		_, err := c.ModifyPosition(ctx, &execv1.ModifyPositionRequest{Symbol: "EURUSD", StopLoss: dec("1.1").Proto()})
		return err
	}
	cases := []struct {
		name       string
		configured string
		openReads  bool
		ctx        context.Context
		call       call
		want       codes.Code
	}{
		{"Submit_WithTheToken_Passes", token, false, withHeader("Bearer " + token), submit, codes.OK},
		{"Submit_WithoutAToken_IsUnauthenticated", token, false, none(), submit, codes.Unauthenticated},
		{"Submit_WithAWrongToken_IsUnauthenticated", token, false, withHeader("Bearer nope"), submit, codes.Unauthenticated},
		{"Submit_WithTheTokenButNotAsBearer_IsUnauthenticated", token, false, withHeader(token), submit, codes.Unauthenticated},
		{"Cancel_WithoutAToken_IsUnauthenticated", token, false, none(), cancel, codes.Unauthenticated},
		{"CancelAll_WithoutAToken_IsUnauthenticated", token, false, none(), cancelAll, codes.Unauthenticated},
		{"SetTradingState_WithoutAToken_IsUnauthenticated", token, false, none(), halt, codes.Unauthenticated},
		{"NoTokenConfigured_RefusesEveryCallWhateverTheHeader", "", false, withHeader("Bearer "), halt, codes.Unauthenticated},
		{"NoTokenConfigured_RefusesReadsToo", "", false, none(), list, codes.Unauthenticated},
		{"ListOrders_WithoutAToken_IsUnauthenticated", token, false, none(), list, codes.Unauthenticated},
		{"ListOrders_WithAWrongToken_IsUnauthenticated", token, false, withHeader("Bearer nope"), list, codes.Unauthenticated},
		{"ListPositions_WithoutAToken_IsUnauthenticated", token, false, none(), positions, codes.Unauthenticated},
		{"GetOrder_WithoutAToken_IsUnauthenticated", token, false, none(), getOrder, codes.Unauthenticated},
		{"GetRiskLimits_WithoutAToken_IsUnauthenticated", token, false, none(), limits, codes.Unauthenticated},
		{"StreamExecutionReports_WithoutAToken_IsUnauthenticated", token, false, none(), stream, codes.Unauthenticated},
		{"StreamExecutionReports_WithAWrongToken_IsUnauthenticated", token, false, withHeader("Bearer nope"), stream, codes.Unauthenticated},
		{"ListOrders_WithTheToken_Passes", token, false, withHeader("Bearer " + token), list, codes.OK},
		{"StreamExecutionReports_WithTheToken_Passes", token, false, withHeader("Bearer " + token), stream, codes.OK},
		{"Reads_FromLoopback_PassWithoutATokenWhenOpened", token, true, none(), list, codes.OK},
		{"Positions_FromLoopback_PassWithoutATokenWhenOpened", token, true, none(), positions, codes.OK},
		{"Stream_FromLoopback_PassesWithoutATokenWhenOpened", token, true, none(), stream, codes.OK},
		{"Submit_FromLoopback_StillNeedsTheTokenWhenReadsAreOpen", token, true, none(), submit, codes.Unauthenticated},
		{"Halt_FromLoopback_StillNeedsTheTokenWhenReadsAreOpen", token, true, none(), halt, codes.Unauthenticated},
		{"ModifyOrder_WithoutAToken_IsUnauthenticated", token, true, none(), modifyOrder, codes.Unauthenticated},
		{"ModifyPosition_WithoutAToken_IsUnauthenticated", token, true, none(), modifyPosition, codes.Unauthenticated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{token: c.configured, openReads: c.openReads})

			err := c.call(c.ctx, s.client)

			if status.Code(err) != c.want {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

func TestErrors_MapToCodesWithAnErrorInfoReason(t *testing.T) {
	cases := []struct {
		name       string
		arrange    func(t *testing.T, s *server)
		act        func(ctx context.Context, s *server) error
		wantCode   codes.Code
		wantReason string
	}{
		{
			name:    "ReusedClientOrderID_IsAlreadyExists",
			arrange: func(t *testing.T, s *server) { mustSubmit(t, s, limit("o1", "1.10000")) },
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.SubmitOrder(ctx, limit("o1", "1.09000"))
				return err
			},
			wantCode: codes.AlreadyExists, wantReason: "CLIENT_ORDER_ID_REUSED",
		},
		{
			name: "UnknownOrder_IsNotFound",
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "nope"})
				return err
			},
			wantCode: codes.NotFound, wantReason: "ORDER_NOT_FOUND",
		},
		{
			name: "CancelOfAFilledOrder_IsFailedPrecondition",
			arrange: func(t *testing.T, s *server) {
				s.quote(t, "1.09990", "1.10000")
				mustSubmit(t, s, marketBuy("o1"))
			},
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.CancelOrder(ctx, &execv1.CancelOrderRequest{ClientOrderId: "o1"})
				return err
			},
			wantCode: codes.FailedPrecondition, wantReason: "ORDER_NOT_WORKING",
		},
		{
			name:    "LeavingHaltedBeforeReconciliation_IsFailedPrecondition",
			arrange: func(t *testing.T, s *server) { s.eng.Unreconcile("test") },
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_ACTIVE})
				return err
			},
			wantCode: codes.FailedPrecondition, wantReason: "NOT_RECONCILED",
		},
		{
			name:    "AJournalThatCannotWrite_IsUnavailable",
			arrange: func(t *testing.T, s *server) { s.store.failing.Store(true) },
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.SubmitOrder(ctx, limit("o1", "1.10000"))
				return err
			},
			wantCode: codes.Unavailable, wantReason: "JOURNAL_UNAVAILABLE",
		},
		{
			name: "ModifyOfAFilledOrder_IsFailedPrecondition",
			arrange: func(t *testing.T, s *server) {
				s.quote(t, "1.09990", "1.10000")
				mustSubmit(t, s, marketBuy("o1"))
			},
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.ModifyOrder(ctx, &execv1.ModifyOrderRequest{ClientOrderId: "o1", StopLoss: dec("1.09000").Proto()})
				return err
			},
			wantCode: codes.FailedPrecondition, wantReason: "ORDER_NOT_MODIFIABLE",
		},
		{
			name: "ModifyPositionWhenFlat_IsFailedPrecondition",
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.ModifyPosition(ctx, &execv1.ModifyPositionRequest{Symbol: "EURUSD", StopLoss: dec("1.09000").Proto()})
				return err
			},
			wantCode: codes.FailedPrecondition, wantReason: "NO_POSITION",
		},
		{
			name: "ModifyOfAnUnknownOrder_IsNotFound",
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.ModifyOrder(ctx, &execv1.ModifyOrderRequest{ClientOrderId: "nope", Price: dec("1.1").Proto()})
				return err
			},
			wantCode: codes.NotFound, wantReason: "ORDER_NOT_FOUND",
		},
		{
			name:    "AfterTheEngineClosed_IsUnavailable",
			arrange: func(t *testing.T, s *server) { s.eng.Close() },
			act: func(ctx context.Context, s *server) error {
				_, err := s.client.SubmitOrder(ctx, limit("o1", "1.10000"))
				return err
			},
			wantCode: codes.Unavailable, wantReason: "SHUTTING_DOWN",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{token: token})
			if c.arrange != nil {
				c.arrange(t, s)
			}

			err := c.act(authed(t), s)

			if status.Code(err) != c.wantCode {
				t.Fatalf("err %v, want %v", err, c.wantCode)
			}
			ei := errorInfo(err)
			if ei.GetReason() != c.wantReason || ei.GetDomain() != "execution.kairos" {
				t.Fatalf("error info %v, want reason %s in domain execution.kairos", ei, c.wantReason)
			}
			if strings.Contains(status.Convert(err).Message(), "/var/lib") {
				t.Fatalf("the message leaks an internal error: %q", status.Convert(err).Message())
			}
		})
	}
}

func mustSubmit(t *testing.T, s *server, req *execv1.SubmitOrderRequest) *execv1.Order {
	t.Helper()
	resp, err := s.client.SubmitOrder(authed(t), req)
	if err != nil {
		t.Fatalf("submit %s: %v", req.GetClientOrderId(), err)
	}
	return resp.GetOrder()
}

func TestBadInput_IsInvalidArgumentNamingTheField(t *testing.T) {
	cases := []struct {
		name      string
		act       func(ctx context.Context, c execv1.ExecutionServiceClient) error
		wantField string
	}{
		{"SubmitOrder_UnknownSymbol", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			r := limit("o1", "1.10000")
			r.Symbol = "NOPE"
			_, err := c.SubmitOrder(ctx, r)
			return err
		}, "symbol"},
		{"SubmitOrder_PriceBeyondTheDigits", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.SubmitOrder(ctx, limit("o1", "1.100001"))
			return err
		}, "price"},
		{"CancelOrder_BadClientOrderID", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.CancelOrder(ctx, &execv1.CancelOrderRequest{ClientOrderId: "has space"})
			return err
		}, "client_order_id"},
		{"GetOrder_EmptyClientOrderID", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.GetOrder(ctx, &execv1.GetOrderRequest{})
			return err
		}, "client_order_id"},
		{"CancelAll_UnknownSymbol", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.CancelAll(ctx, &execv1.CancelAllRequest{Symbol: "NOPE"})
			return err
		}, "symbol"},
		{"ListOrders_PageSizeAbove1000", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.ListOrders(ctx, &execv1.ListOrdersRequest{PageSize: 1001})
			return err
		}, "page_size"},
		{"ListOrders_APageTokenNotIssued", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.ListOrders(ctx, &execv1.ListOrdersRequest{PageToken: "abc"})
			return err
		}, "page_token"},
		{"ListOrders_ANegativePageToken", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.ListOrders(ctx, &execv1.ListOrdersRequest{PageToken: "-1"})
			return err
		}, "page_token"},
		{"ListOrders_AnUnknownStatus", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.ListOrders(ctx, &execv1.ListOrdersRequest{Statuses: []execv1.OrderStatus{99}})
			return err
		}, "statuses"},
		{"SetTradingState_Unspecified", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.SetTradingState(ctx, &execv1.SetTradingStateRequest{})
			return err
		}, "state"},
		{"SetTradingState_FlattenWithoutCancelAll", func(ctx context.Context, c execv1.ExecutionServiceClient) error {
			_, err := c.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED, Flatten: true})
			return err
		}, "flatten"},
	}
	s := start(t, config{token: token})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seq := s.jr.LastSeq()

			err := c.act(authed(t), s.client)

			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("err %v, want INVALID_ARGUMENT", err)
			}
			if got := violations(err); len(got) == 0 || got[0] != c.wantField {
				t.Fatalf("field violations %v, want %s first", got, c.wantField)
			}
			if s.jr.LastSeq() != seq {
				t.Fatal("bad input was journaled")
			}
		})
	}
}

func TestSubmitOrder_AnExactRepeatStaysIdempotentAfterItStopsValidating(t *testing.T) {
	s := start(t, config{token: token})
	req := limit("gtd1", "1.10000")
	req.TimeInForce = execv1.TimeInForce_TIME_IN_FORCE_GTD
	req.ExpireTimeUs = s.now.Load() + time.Minute.Microseconds()
	first := mustSubmit(t, s, req)
	s.now.Add(time.Hour.Microseconds()) // the expiry is now in the past: the request no longer validates

	resp, err := s.client.SubmitOrder(authed(t), req)

	if err != nil || !resp.GetDuplicate() || !proto.Equal(resp.GetOrder(), first) {
		t.Fatalf("repeat: %v %v; want the first order as a duplicate", resp, err)
	}
	changed := proto.Clone(req).(*execv1.SubmitOrderRequest)
	changed.Quantity = dec("0.20").Proto()
	if _, err := s.client.SubmitOrder(authed(t), changed); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a changed repeat that no longer validates: %v, want ALREADY_EXISTS", err)
	}
}

func TestListOrders_PagesWithTheTokensItIssues(t *testing.T) {
	s := start(t, config{token: token})
	for i := 1; i <= 5; i++ {
		mustSubmit(t, s, limit(fmt.Sprintf("o%d", i), "1.10000"))
	}
	var got []string
	var tokens []string
	req := &execv1.ListOrdersRequest{PageSize: 2}
	for range 10 {
		resp, err := s.client.ListOrders(authed(t), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range resp.GetOrders() {
			got = append(got, o.GetClientOrderId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		tokens = append(tokens, resp.GetNextPageToken())
		req.PageToken = resp.GetNextPageToken()
	}
	if fmt.Sprint(got) != "[o5 o4 o3 o2 o1]" || fmt.Sprint(tokens) != "[2 4]" {
		t.Fatalf("pages gave %v with tokens %v, want newest first in pages of two", got, tokens)
	}
}

func TestGetRiskLimits_ReturnsTheConfiguredLimitsAndTheState(t *testing.T) {
	s := start(t, config{token: token, limits: risk.Limits{MaxOrderQuantity: dec("5"), MaxOpenOrders: 7, SubmitRate: risk.RateLimit{MaxCount: 10, WindowMS: 1000}}})

	resp, err := s.client.GetRiskLimits(authed(t), &execv1.GetRiskLimitsRequest{})

	if err != nil {
		t.Fatal(err)
	}
	l := resp.GetLimits()
	if resp.GetTradingState() != execv1.TradingState_TRADING_STATE_ACTIVE || l.GetMaxOpenOrders() != 7 ||
		!proto.Equal(l.GetMaxOrderQuantity(), dec("5").Proto()) || l.GetSubmitRate().GetMaxCount() != 10 || l.GetSubmitRate().GetWindowMs() != 1000 {
		t.Fatalf("limits %v", resp)
	}
}

func TestSetTradingState_AsTheKillSwitch_HaltsCancelsAndFlattens(t *testing.T) {
	s := start(t, config{token: token})
	s.quote(t, "1.09990", "1.10000")
	mustSubmit(t, s, marketBuy("long"))
	mustSubmit(t, s, limit("resting", "1.05000"))

	resp, err := s.client.SetTradingState(authed(t), &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED,
		CancelAll: true, Flatten: true, Reason: "kill"})

	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPrevious() != execv1.TradingState_TRADING_STATE_ACTIVE || resp.GetCurrent() != execv1.TradingState_TRADING_STATE_HALTED ||
		fmt.Sprint(resp.GetCanceledClientOrderIds()) != "[resting]" || len(resp.GetFlattenClientOrderIds()) != 1 {
		t.Fatalf("kill switch answered %v", resp)
	}
	pos, err := s.client.ListPositions(authed(t), &execv1.ListPositionsRequest{})
	if err != nil || len(pos.GetPositions()) != 0 {
		t.Fatalf("positions after flatten: %v %v, want none", pos, err)
	}
}

// recvN reads n reports from a stream.
func recvN(t *testing.T, st grpc.ServerStreamingClient[execv1.StreamExecutionReportsResponse], n int) []*execv1.ExecutionReport {
	t.Helper()
	var out []*execv1.ExecutionReport
	for len(out) < n {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d of %d reports: %v", len(out), n, err)
		}
		out = append(out, r.GetReport())
	}
	return out
}

func TestStreamExecutionReports_ReplaysFromTheSequenceThenGoesLiveWithoutAGap(t *testing.T) {
	s := start(t, config{token: token})
	mustSubmit(t, s, limit("o1", "1.10000"))
	after := s.jr.LastSeq()
	mustSubmit(t, s, limit("o2", "1.10000"))
	ctx := authed(t)

	st, err := s.client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{AfterSequence: after})
	if err != nil {
		t.Fatal(err)
	}
	replayed := recvN(t, st, 2) // o2 SUBMITTED, ACCEPTED
	mustSubmit(t, s, limit("o3", "1.10000"))
	live := recvN(t, st, 2) // o3 SUBMITTED, ACCEPTED

	all := append(replayed, live...)
	want := []string{"o2 REPORT_TYPE_SUBMITTED", "o2 REPORT_TYPE_ACCEPTED", "o3 REPORT_TYPE_SUBMITTED", "o3 REPORT_TYPE_ACCEPTED"}
	for i, r := range all {
		if got := r.GetOrder().GetClientOrderId() + " " + r.GetType().String(); got != want[i] {
			t.Fatalf("report %d is %s, want %s", i, got, want[i])
		}
		if r.GetSequence() <= after || i > 0 && r.GetSequence() <= all[i-1].GetSequence() {
			t.Fatalf("report %d has sequence %d after %d: not increasing past the resume point", i, r.GetSequence(), after)
		}
	}
}

func TestStreamExecutionReports_FiltersBySymbol(t *testing.T) {
	s := start(t, config{token: token})
	ctx := authed(t)
	st, err := s.client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{Symbols: []string{"EURUSD"}})
	if err != nil {
		t.Fatal(err)
	}

	mustSubmit(t, s, limit("o1", "1.10000"))

	// The reconciliation's state change is not about EURUSD: the first report is the order's.
	if r := recvN(t, st, 1)[0]; r.GetOrder().GetClientOrderId() != "o1" {
		t.Fatalf("first report %v, want o1's", r)
	}
}

func TestStreamExecutionReports_AReaderThatFallsBehindIsCutWithAResumePoint(t *testing.T) {
	// The smallest flow-control window (64 KiB) makes the server's Send block soon after the reader
	// stops; the live buffer (8192 reports) then overflows.
	s := start(t, config{token: token, clientOpts: []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}})
	ctx := authed(t)
	st, err := s.client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{AfterSequence: s.jr.LastSeq()})
	if err != nil {
		t.Fatal(err)
	}
	// A first report proves the live subscription is in place: the server subscribes before it
	// replays, and it reaches the reader either way.
	appendReports(t, s, 1)
	first := recvN(t, st, 1)[0].GetSequence()

	// The reader stops while 20000 reports are journaled, then reads on.
	appendReports(t, s, 20000)
	last := s.jr.LastSeq()
	var got []uint64
	var endErr error
	for {
		r, err := st.Recv()
		if err != nil {
			endErr = err
			break
		}
		got = append(got, r.GetReport().GetSequence())
	}

	if status.Code(endErr) != codes.ResourceExhausted {
		t.Fatalf("stream ended with %v after %d reports, want RESOURCE_EXHAUSTED", endErr, len(got))
	}
	msg := status.Convert(endErr).Message()
	_, tail, found := strings.Cut(msg, "after_sequence=")
	resume, perr := strconv.ParseUint(tail, 10, 64)
	if !found || perr != nil {
		t.Fatalf("no resume point in %q", msg)
	}
	if len(got) == 0 || got[0] != first+1 || got[len(got)-1] != resume || uint64(len(got)) != resume-first || resume >= last {
		t.Fatalf("received %d reports up to %d (first %d), resume point %d, last %d: want consecutive reports up to the resume point, short of the last",
			len(got), got[len(got)-1], first, resume, last)
	}

	// Resuming from the point given reads the rest, with nothing missing.
	st2, err := s.client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{AfterSequence: resume})
	if err != nil {
		t.Fatal(err)
	}
	rest := recvN(t, st2, int(last-resume))
	if rest[0].GetSequence() != resume+1 || rest[len(rest)-1].GetSequence() != last {
		t.Fatalf("resumed %d..%d, want %d..%d", rest[0].GetSequence(), rest[len(rest)-1].GetSequence(), resume+1, last)
	}
}

// appendReports journals n trading-state reports in one batch and waits until they are durable.
func appendReports(t *testing.T, s *server, n int) {
	t.Helper()
	payload, err := proto.Marshal(&execv1.ExecutionReport{Type: execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED,
		TradingState: execv1.TradingState_TRADING_STATE_ACTIVE, TimeUs: s.now.Load()})
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]journal.Entry, n)
	for i := range entries {
		entries[i] = journal.Entry{Kind: journal.KindReport, Payload: payload}
	}
	tk, _, err := s.jr.Append(s.now.Load(), entries...)
	if err == nil {
		err = tk.Wait(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
}
