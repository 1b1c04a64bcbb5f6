package mdservice_test

// MarketDataService runs for real on a loopback port over a real ingest pipeline and fan-out hub;
// the tests talk to it with a generated client. Ticks are synthetic and in the past (validation
// refuses future ones).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/ingest"
	"github.com/kairos-mt5/kairos/go/collector/mdservice"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// t0 is 2024-01-02 10:00:00 UTC in milliseconds: the first synthetic tick.
const t0 = int64(1_704_189_600_000)

type server struct {
	client collectorv1.MarketDataServiceClient
	pipe   *ingest.Pipeline
	hub    *fanout.Hub
	m      *metrics.Metrics
	stop   chan struct{}
}

type config struct {
	policy     fanout.Policy
	queue      int
	clientOpts []grpc.DialOption
	ingest     func(*ingest.Config) // adjusts the pipeline's configuration
}

// start serves MarketDataService on 127.0.0.1:0 until the test ends.
func start(t *testing.T, cfg config) *server {
	t.Helper()
	if cfg.queue == 0 {
		cfg.queue = 1024
	}
	m := metrics.New()
	hub := fanout.New(cfg.queue, cfg.policy, m)
	icfg := ingest.Config{BarPeriods: []uint32{60}, NATSQueue: 16}
	if cfg.ingest != nil {
		cfg.ingest(&icfg)
	}
	pipe := ingest.New(icfg, m, slog.New(slog.DiscardHandler), hub, nil, nil)
	s := &server{pipe: pipe, hub: hub, m: m, stop: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	mdservice.New(pipe, hub, s.stop).Register(g)
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, cfg.clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.client = collectorv1.NewMarketDataServiceClient(cc)
	t.Cleanup(func() {
		_ = cc.Close()
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		_ = pipe.Close(context.Background())
	})
	return s
}

func info(symbol string) *mdv1.SymbolInfo {
	return &mdv1.SymbolInfo{Symbol: symbol, Digits: 5, Point: 1e-5, ContractSize: 100000, VolumeMin: 0.01, VolumeStep: 0.01, TickSize: 1e-5}
}

// ticks is a batch of n ticks of symbol, one every stepMS from atMS, sequences from seq.
func ticks(symbol string, n int, atMS, stepMS int64, seq uint64) *mdv1.TickBatch {
	b := &mdv1.TickBatch{Symbol: symbol}
	for i := range n {
		b.TimeMsc = append(b.TimeMsc, atMS+int64(i)*stepMS)
		b.Bid = append(b.Bid, 1.10000+float64(i)*1e-5)
		b.Ask = append(b.Ask, 1.10002+float64(i)*1e-5)
		b.Sequence = append(b.Sequence, seq+uint64(i))
	}
	return b
}

// ingestTicks announces symbol and sends batches through the pipeline as a source would.
func (s *server) ingestTicks(t *testing.T, symbol string, batches ...*mdv1.TickBatch) {
	t.Helper()
	src := s.pipe.Source("test:"+symbol, "grpc")
	if err := src.Announce(info(symbol)); err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if res := src.Ticks(b, nil); res.RejectedTotal != 0 {
			t.Fatalf("test ticks rejected: %v", res.Rejects)
		}
	}
}

func ctx(t *testing.T) context.Context { return testkit.Context(t, 20*time.Second) }

// subscribe opens a subscription and waits until the hub holds it.
func (s *server) subscribe(t *testing.T, ctx context.Context, req *collectorv1.SubscribeRequest) grpc.ServerStreamingClient[collectorv1.SubscribeResponse] {
	t.Helper()
	before := s.hub.Len()
	st, err := s.client.Subscribe(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "the subscription to reach the hub", 5*time.Second, func() bool { return s.hub.Len() == before+1 })
	return st
}

// describe renders a subscription event as "info EURUSD", "ticks EURUSD 3" or "bar EURUSD 60".
func describe(r *collectorv1.SubscribeResponse) string {
	switch {
	case r.GetSymbolInfo() != nil:
		return "info " + r.GetSymbolInfo().GetSymbol()
	case r.GetTicks() != nil:
		return fmt.Sprintf("ticks %s %d", r.GetTicks().GetSymbol(), len(r.GetTicks().GetTimeMsc()))
	default:
		return fmt.Sprintf("bar %s %d", r.GetBar().GetSymbol(), r.GetBar().GetPeriodS())
	}
}

func TestSubscribe_AnInvalidRequestIsInvalidArgument(t *testing.T) {
	cases := []struct {
		name string
		req  *collectorv1.SubscribeRequest
	}{
		{"NeitherTicksNorBars", &collectorv1.SubscribeRequest{Symbols: []string{"EURUSD"}}},
		{"AZeroBarPeriod", &collectorv1.SubscribeRequest{Ticks: true, BarPeriodsS: []uint32{60, 0}}},
	}
	s := start(t, config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := s.client.Subscribe(ctx(t), c.req)
			if err == nil {
				_, err = st.Recv()
			}

			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("err %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}

func TestSubscribe_DeliversTheKnownSymbolsThenTheSelectedData(t *testing.T) {
	cases := []struct {
		name string
		req  *collectorv1.SubscribeRequest
		want []string
	}{
		{
			name: "TicksOfOneSymbol",
			req:  &collectorv1.SubscribeRequest{Symbols: []string{"EURUSD"}, Ticks: true},
			want: []string{"info EURUSD", "ticks EURUSD 3", "ticks EURUSD 1"},
		},
		{
			name: "BarsOfEverySymbol",
			req:  &collectorv1.SubscribeRequest{BarPeriodsS: []uint32{60}},
			want: []string{"info EURUSD", "info GBPUSD", "bar EURUSD 60", "bar GBPUSD 60"},
		},
		{
			name: "TicksAndBarsOfOneSymbol",
			req:  &collectorv1.SubscribeRequest{Symbols: []string{"GBPUSD"}, Ticks: true, BarPeriodsS: []uint32{60}},
			want: []string{"info GBPUSD", "ticks GBPUSD 3", "ticks GBPUSD 1", "bar GBPUSD 60"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{})
			s.ingestTicks(t, "EURUSD")
			s.ingestTicks(t, "GBPUSD")
			st := s.subscribe(t, ctx(t), c.req)

			// Three ticks in the first minute, then one in the next, which closes the M1 bar.
			s.ingestTicks(t, "EURUSD", ticks("EURUSD", 3, t0, 1000, 1), ticks("EURUSD", 1, t0+60_000, 1, 4))
			s.ingestTicks(t, "GBPUSD", ticks("GBPUSD", 3, t0, 1000, 1), ticks("GBPUSD", 1, t0+60_000, 1, 4))

			var got []string
			for len(got) < len(c.want) {
				r, err := st.Recv()
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				got = append(got, describe(r))
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("received %v, want %v", got, c.want)
			}
		})
	}
}

func TestSubscribe_ASlowSubscriber(t *testing.T) {
	// The smallest gRPC window makes the server's sends block soon after the reader stops, so the
	// subscriber's queue (8 events) overflows while 20000 single-tick batches go in.
	const n = 20000
	slow := []grpc.DialOption{grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}
	cases := []struct {
		name    string
		policy  fanout.Policy
		wantCut bool
	}{
		{"UnderTheCutPolicy_IsEndedWithResourceExhausted", fanout.Cut, true},
		{"UnderTheConflatePolicy_KeepsTheLatestTickAndStays", fanout.Conflate, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{policy: c.policy, queue: 8, clientOpts: slow})
			ctx, cancel := context.WithCancel(ctx(t))
			defer cancel()
			st := s.subscribe(t, ctx, &collectorv1.SubscribeRequest{Ticks: true})

			start := time.Now()
			for i := range n {
				s.hub.PublishTicks(ticks("EURUSD", 1, t0+int64(i), 1, uint64(i+1)))
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("publishing to a stalled subscriber took %v: ingest was held back", d)
			}

			received, last := 0, uint64(0)
			for last != n {
				r, err := st.Recv()
				if err != nil {
					if !c.wantCut {
						t.Fatalf("after %d events: %v, want the stream kept", received, err)
					}
					if status.Code(err) != codes.ResourceExhausted {
						t.Fatalf("after %d events: %v, want RESOURCE_EXHAUSTED", received, err)
					}
					if got := testutil.ToFloat64(s.m.SubscribersCut); got != 1 {
						t.Fatalf("subscribers cut = %v, want 1", got)
					}
					return
				}
				received++
				if seqs := r.GetTicks().GetSequence(); len(seqs) > 0 {
					last = seqs[len(seqs)-1]
				}
			}
			if c.wantCut {
				t.Fatalf("all %d batches arrived (as %d events): the slow subscriber was not cut", n, received)
			}
			if received >= n {
				t.Fatalf("%d events for %d batches: nothing was conflated", received, n)
			}
		})
	}
}

func TestSubscribe_EndsWithUnavailableWhenTheCollectorStops(t *testing.T) {
	s := start(t, config{})
	st := s.subscribe(t, ctx(t), &collectorv1.SubscribeRequest{Ticks: true})

	close(s.stop)

	_, err := st.Recv()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v, want UNAVAILABLE", err)
	}
	testkit.WaitFor(t, "the subscriber to leave the hub", 5*time.Second, func() bool { return s.hub.Len() == 0 })
}

func TestSubscribe_AClientThatGoesAwayLeavesTheHub(t *testing.T) {
	s := start(t, config{})
	ctx, cancel := context.WithCancel(ctx(t))
	s.subscribe(t, ctx, &collectorv1.SubscribeRequest{Ticks: true})

	cancel()

	testkit.WaitFor(t, "the subscriber to leave the hub", 5*time.Second, func() bool { return s.hub.Len() == 0 })
	if n := testutil.ToFloat64(s.m.Subscribers); n != 0 {
		t.Fatalf("subscribers gauge %v, want 0", n)
	}
}

func TestPublish(t *testing.T) {
	bad := func(b *mdv1.TickBatch, idx ...int) *mdv1.TickBatch {
		for _, i := range idx {
			b.Bid[i] = -1
		}
		return b
	}
	tickMsg := func(b *mdv1.TickBatch) *collectorv1.PublishRequest {
		return &collectorv1.PublishRequest{Source: "pub", Payload: &collectorv1.PublishRequest_Ticks{Ticks: b}}
	}
	infoMsg := &collectorv1.PublishRequest{Source: "pub", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: info("EURUSD")}}
	cases := []struct {
		name           string
		msgs           []*collectorv1.PublishRequest
		wantCode       codes.Code
		wantAccepted   uint64
		wantRejected   uint64
		wantViolations int
		wantFirstField string
	}{
		{
			name:         "ValidTicks_AreCountedAsAccepted",
			msgs:         []*collectorv1.PublishRequest{infoMsg, tickMsg(ticks("EURUSD", 5, t0, 10, 1)), tickMsg(ticks("EURUSD", 5, t0+50, 10, 6))},
			wantCode:     codes.OK,
			wantAccepted: 10,
		},
		{
			name:           "RejectedTicks_AreNamedByMessageAndIndex_AndTheValidOnesKept",
			msgs:           []*collectorv1.PublishRequest{infoMsg, tickMsg(ticks("EURUSD", 5, t0, 10, 1)), tickMsg(bad(ticks("EURUSD", 5, t0+50, 10, 6), 2))},
			wantCode:       codes.InvalidArgument,
			wantAccepted:   9,
			wantRejected:   1,
			wantViolations: 1,
			wantFirstField: "messages[2].ticks[2]",
		},
		{
			name: "TheViolationsListedOverTheWholeCall_AreBoundedAt100",
			msgs: []*collectorv1.PublishRequest{infoMsg, tickMsg(bad(ticks("EURUSD", 60, t0, 10, 1), seq(60)...)),
				tickMsg(bad(ticks("EURUSD", 60, t0+600, 10, 61), seq(60)...))},
			wantCode:       codes.InvalidArgument,
			wantRejected:   120,
			wantViolations: 100,
			wantFirstField: "messages[1].ticks[0]",
		},
		{
			name:     "AMessageWithoutAPayload_IsInvalidArgument",
			msgs:     []*collectorv1.PublishRequest{{Source: "pub"}},
			wantCode: codes.InvalidArgument,
		},
		{
			name:     "SymbolInfoWithoutASymbol_IsInvalidArgument",
			msgs:     []*collectorv1.PublishRequest{{Source: "pub", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: &mdv1.SymbolInfo{Point: 1e-5}}}},
			wantCode: codes.InvalidArgument,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{})
			st, err := s.client.Publish(ctx(t))
			if err != nil {
				t.Fatal(err)
			}

			for _, m := range c.msgs {
				if err := st.Send(m); err != nil && err != io.EOF {
					t.Fatal(err)
				}
			}
			resp, err := st.CloseAndRecv()

			if status.Code(err) != c.wantCode {
				t.Fatalf("err %v, want %v", err, c.wantCode)
			}
			if c.wantCode == codes.OK {
				if resp.GetAccepted() != c.wantAccepted || resp.GetRejected() != 0 {
					t.Fatalf("response %v, want %d accepted", resp, c.wantAccepted)
				}
				return
			}
			if c.wantViolations == 0 {
				return
			}
			var br *errdetails.BadRequest
			var counts *collectorv1.PublishResponse
			for _, d := range status.Convert(err).Details() {
				switch v := d.(type) {
				case *errdetails.BadRequest:
					br = v
				case *collectorv1.PublishResponse:
					counts = v
				}
			}
			if br == nil || len(br.GetFieldViolations()) != c.wantViolations || br.GetFieldViolations()[0].GetField() != c.wantFirstField ||
				br.GetFieldViolations()[0].GetReason() != mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE.String() {
				t.Fatalf("bad request %v, want %d violations, the first %s NON_POSITIVE_PRICE", br, c.wantViolations, c.wantFirstField)
			}
			if counts.GetAccepted() != c.wantAccepted || counts.GetRejected() != c.wantRejected {
				t.Fatalf("counts %v, want %d accepted %d rejected", counts, c.wantAccepted, c.wantRejected)
			}
		})
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestStream_AcknowledgesEachBatchAndFollowsTheLatestSubscription(t *testing.T) {
	s := start(t, config{})
	st, err := s.client.Stream(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	send := func(r *collectorv1.StreamRequest) {
		t.Helper()
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	subscribe := func(symbol string) {
		send(&collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Subscribe{Subscribe: &collectorv1.SubscribeRequest{Symbols: []string{symbol}, Ticks: true}}})
	}
	publish := func(p *collectorv1.PublishRequest) {
		send(&collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Publish{Publish: p}})
	}
	var got []string
	recv := func(n int) {
		t.Helper()
		for range n {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			switch {
			case r.GetAck() != nil:
				a := r.GetAck()
				got = append(got, fmt.Sprintf("ack %s %d/%d last %d", a.GetSymbol(), a.GetAccepted(), len(a.GetRejects()), a.GetLastSequence()))
			case r.GetTicks() != nil:
				got = append(got, fmt.Sprintf("ticks %s %d", r.GetTicks().GetSymbol(), len(r.GetTicks().GetTimeMsc())))
			case r.GetSymbolInfo() != nil:
				got = append(got, "info "+r.GetSymbolInfo().GetSymbol())
			}
		}
	}

	publish(&collectorv1.PublishRequest{Source: "s", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: info("EURUSD")}})
	publish(&collectorv1.PublishRequest{Source: "s", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: info("GBPUSD")}})
	subscribe("GBPUSD")
	recv(1) // the subscription's symbol info: the filter is in place
	publish(&collectorv1.PublishRequest{Source: "s", Payload: &collectorv1.PublishRequest_Ticks{Ticks: ticks("EURUSD", 2, t0, 10, 1)}})
	recv(1) // EURUSD is acknowledged, not delivered
	subscribe("EURUSD")
	recv(1)
	b := ticks("EURUSD", 3, t0+100, 10, 3)
	b.Bid[1] = -1
	publish(&collectorv1.PublishRequest{Source: "s", Payload: &collectorv1.PublishRequest_Ticks{Ticks: b}})
	recv(2) // the batch's two valid ticks and its ack, in either order

	want := map[string]bool{"info GBPUSD": true, "ack EURUSD 2/0 last 2": true, "info EURUSD": true, "ticks EURUSD 2": true, "ack EURUSD 2/1 last 5": true}
	if len(got) != len(want) {
		t.Fatalf("received %v", got)
	}
	for i, g := range got {
		if !want[g] || i < 3 && g != []string{"info GBPUSD", "ack EURUSD 2/0 last 2", "info EURUSD"}[i] {
			t.Fatalf("received %v, want info GBPUSD, ack EURUSD 2/0 last 2, info EURUSD, then ticks EURUSD 2 and ack EURUSD 2/1 last 5", got)
		}
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("after CloseSend: %v, want the stream to end cleanly", err)
	}
}

func TestStream_AnInvalidRequestEndsItWithInvalidArgument(t *testing.T) {
	cases := []struct {
		name string
		req  *collectorv1.StreamRequest
	}{
		{"AnEmptyRequest", &collectorv1.StreamRequest{}},
		{"APublishWithoutAPayload", &collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Publish{Publish: &collectorv1.PublishRequest{}}}},
		{"ASubscriptionToNothing", &collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Subscribe{Subscribe: &collectorv1.SubscribeRequest{}}}},
		{"SymbolInfoWithoutASymbol", &collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Publish{Publish: &collectorv1.PublishRequest{
			Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: &mdv1.SymbolInfo{}}}}}},
	}
	s := start(t, config{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := s.client.Stream(ctx(t))
			if err != nil {
				t.Fatal(err)
			}

			if err := st.Send(c.req); err != nil {
				t.Fatal(err)
			}
			_, err = st.Recv()

			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("err %v, want INVALID_ARGUMENT", err)
			}
		})
	}
}

func TestListSymbols_ListsEveryAnnouncedSymbolByName(t *testing.T) {
	s := start(t, config{})
	s.ingestTicks(t, "GBPUSD")
	s.ingestTicks(t, "EURUSD")

	resp, err := s.client.ListSymbols(ctx(t), &collectorv1.ListSymbolsRequest{})

	var names []string
	for _, i := range resp.GetSymbols() {
		names = append(names, i.GetSymbol())
	}
	if err != nil || fmt.Sprint(names) != "[EURUSD GBPUSD]" {
		t.Fatalf("ListSymbols = %v, %v; want [EURUSD GBPUSD]", names, err)
	}
}
