package collector

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(grpcauth.Bearer(testToken, false)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestRealTicksFromTheBridgeReachNATSSubscribersInferenceAndBars(t *testing.T) {
	inf, err := testinfer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inf.Stop)
	cfg := testConfig()
	cfg.InferenceEndpoints = []string{inf.Addr}
	svc := start(t, cfg)
	nats := subscribeNATS(t, svc.NATSURL())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr())).Subscribe(ctx,
		&collectorv1.SubscribeRequest{Symbols: []string{"EURUSD"}, Ticks: true, BarPeriodsS: []uint32{60}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "gRPC subscriber registered", 5*time.Second, func() bool { return svc.Hub.Len() == 1 })

	ticks := realTicks(t)
	br := dialBridge(t, svc.BridgeAddr())
	br.send(t, golden(t, "frame_hello"), golden(t, "frame_symbol_info"))
	if w := br.welcome(t); w.ResumeAfter != 0 || w.HeartbeatIntervalMs != 200 || !strings.HasPrefix(w.ServerVersion, "kairos-collector") {
		t.Fatalf("welcome %v", w)
	}
	seq := uint64(3)
	for _, b := range ticksdata.Batches("EURUSD", ticks, 100, 1) {
		br.send(t, ticksFrame(seq, b))
		seq++
	}
	want := m1Bars(ticks)
	want = want[:len(want)-1] // the last bar stays open (no idle timer here: a loaded machine can pause a feed)
	testkit.WaitFor(t, "every tick and M1 bar on NATS", 20*time.Second, func() bool {
		n, bars, _ := nats.snapshot()
		return n == len(ticks) && len(bars) == len(want)
	})
	_, bars, _ := nats.snapshot()
	for i := range want {
		if !sameBar(bars[i], want[i]) {
			t.Fatalf("M1 bar %d on NATS:\n got  %v\n want %v", i, bars[i], want[i])
		}
	}
	// The gRPC subscriber saw the symbol, every tick in order and the same bars.
	var gotTicks, gotBars int
	var lastSeq uint64
	for gotTicks < len(ticks) || gotBars < len(want) {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatalf("subscriber after %d ticks, %d bars: %v", gotTicks, gotBars, err)
		}
		switch {
		case ev.GetTicks() != nil:
			for _, s := range ev.GetTicks().Sequence {
				if s != lastSeq+1 {
					t.Fatalf("subscriber got tick sequence %d after %d", s, lastSeq)
				}
				lastSeq = s
			}
			gotTicks += len(ev.GetTicks().TimeMsc)
		case ev.GetBar() != nil:
			if !sameBar(ev.GetBar(), want[gotBars]) {
				t.Fatalf("gRPC bar %d: %v want %v", gotBars, ev.GetBar(), want[gotBars])
			}
			gotBars++
		}
	}
	testkit.WaitFor(t, "predictions on NATS", 10*time.Second, func() bool { _, _, p := nats.snapshot(); return p > 0 })
	testkit.WaitFor(t, "ack of the last frame", 5*time.Second, func() bool { return br.maxAck() == seq-1 })
	// The bridge's ack follows the collector's accept; the inference link forwards on its own
	// goroutine, so its last requests may still be on the way (a CI run read 8,400 of 9,500 here).
	testkit.WaitFor(t, "every tick at inference", 10*time.Second, func() bool { return inf.Ticks()["EURUSD"] >= len(ticks) })
	if inf.Ticks()["EURUSD"] != len(ticks) {
		t.Fatalf("inference got %d ticks, want %d", inf.Ticks()["EURUSD"], len(ticks))
	}
	m := svc.Metrics
	if got := testutil.ToFloat64(m.TicksAccepted.WithLabelValues("bridge")); got != float64(len(ticks)) {
		t.Fatalf("ticks accepted metric %v", got)
	}
	resp, err := http.Get("http://" + svc.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"kairos_collector_ticks_in_total", "kairos_collector_hop_latency_seconds_bucket", "kairos_collector_inference_batch_ticks", "kairos_collector_queue_depth"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestBridgeReconnectResumesWithoutDoubleCounting(t *testing.T) {
	svc := start(t, testConfig())
	nats := subscribeNATS(t, svc.NATSURL())
	batches := ticksdata.Batches("EURUSD", realTicks(t)[:1000], 100, 1)

	a := dialBridge(t, svc.BridgeAddr())
	a.send(t, hello(42, 1), symbolInfo(2))
	a.welcome(t)
	for i := range 5 { // frames 3..7
		a.send(t, ticksFrame(uint64(3+i), batches[i]))
	}
	testkit.WaitFor(t, "ack 7", 5*time.Second, func() bool { return a.maxAck() == 7 })
	a.nc.Close()

	// The bridge believes only up to 5 was acknowledged: it says Hello (8) and resends 6 and 7.
	b := dialBridge(t, svc.BridgeAddr())
	b.send(t, hello(42, 8))
	if w := b.welcome(t); w.ResumeAfter != 7 {
		t.Fatalf("resume_after = %d, want 7", w.ResumeAfter)
	}
	b.send(t, ticksFrame(6, batches[3]), ticksFrame(7, batches[4]))
	for i := 5; i < 10; i++ { // frames 9..13
		b.send(t, ticksFrame(uint64(4+i), batches[i]))
	}
	testkit.WaitFor(t, "ack 13", 5*time.Second, func() bool { return b.maxAck() == 13 })
	testkit.WaitFor(t, "1000 ticks on NATS", 5*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == 1000 })
	m := svc.Metrics
	if d := testutil.ToFloat64(m.Bridge.Duplicates); d != 2 {
		t.Fatalf("duplicate frames %v, want 2", d)
	}
	if g := testutil.ToFloat64(m.Bridge.SequenceGaps); g != 0 {
		t.Fatalf("gaps %v, want 0 (Hello 8 holds its number)", g)
	}
	nats.mu.Lock()
	for s, c := range nats.seqs {
		if c != 1 {
			t.Errorf("tick sequence %d published %d times", s, c)
		}
	}
	nats.mu.Unlock()
	// A frame lost on the way shows as a gap.
	b.send(t, ticksFrame(15, batches[0]))
	testkit.WaitFor(t, "gap counted", 5*time.Second, func() bool { return testutil.ToFloat64(m.Bridge.GapFrames) == 1 })
}

func errorFrame(frames []*bridgev1.Frame) *bridgev1.Error {
	for _, f := range frames {
		if e := f.GetError(); e != nil {
			return e
		}
	}
	return nil
}

func TestMalformedAndOversizedFramesCloseOnlyTheirConnection(t *testing.T) {
	svc := start(t, testConfig())
	nats := subscribeNATS(t, svc.NATSURL())
	good := dialBridge(t, svc.BridgeAddr())
	good.send(t, hello(1, 1), symbolInfo(2))
	good.welcome(t)

	cases := []struct {
		name   string
		bytes  []byte
		reason string
	}{
		{"malformed", append(protowire.AppendVarint(nil, 5), 0xff, 0xff, 0xff, 0xff, 0xff), "malformed"},
		{"oversized", protowire.AppendVarint(nil, 2<<20), "oversized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := dialBridge(t, svc.BridgeAddr())
			bad.send(t, hello(uint64(len(tc.name)+100), 1))
			bad.welcome(t)
			if _, err := bad.nc.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			select {
			case <-bad.closed:
			case <-time.After(5 * time.Second):
				t.Fatal("connection not closed after a bad frame")
			}
			if e := errorFrame(bad.received()); e == nil || e.Code != bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME {
				t.Fatalf("want a MALFORMED_FRAME error frame before the close, got %v", e)
			}
			if c := testutil.ToFloat64(svc.Metrics.Bridge.FrameErrors.WithLabelValues(tc.reason)); c != 1 {
				t.Fatalf("%s counter = %v", tc.reason, c)
			}
		})
	}
	// A frame before Hello is a protocol violation.
	early := dialBridge(t, svc.BridgeAddr())
	early.send(t, symbolInfo(1))
	<-early.closed
	if e := errorFrame(early.received()); e == nil || e.Code != bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION {
		t.Fatalf("frame before Hello: got %v", e)
	}
	// The healthy connection is unaffected.
	good.send(t, ticksFrame(3, ticksdata.Batches("EURUSD", realTicks(t)[:100], 100, 1)[0]))
	testkit.WaitFor(t, "ticks of the healthy connection", 5*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == 100 })
}

func TestPublishRejectsInvalidTicksWithDetailsAndKeepsValidOnes(t *testing.T) {
	svc := start(t, testConfig())
	nats := subscribeNATS(t, svc.NATSURL())
	client := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ticks := realTicks(t)[:6]
	batches := ticksdata.Batches("EURUSD", ticks, 3, 1)
	batches[0].Bid[1] = batches[0].Ask[1] + 0.001 // crossed
	for _, req := range []*collectorv1.PublishRequest{
		{Source: "replay:test", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: ticksdata.EURUSD()}},
		{Source: "replay:test", Payload: &collectorv1.PublishRequest_Ticks{Ticks: batches[0]}},
		{Source: "replay:test", Payload: &collectorv1.PublishRequest_Ticks{Ticks: batches[1]}},
	} {
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	_, err = stream.CloseAndRecv()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("want INVALID_ARGUMENT, got %v", err)
	}
	var br *errdetails.BadRequest
	var counts *collectorv1.PublishResponse
	for _, d := range st.Details() {
		switch v := d.(type) {
		case *errdetails.BadRequest:
			br = v
		case *collectorv1.PublishResponse:
			counts = v
		}
	}
	if br == nil || len(br.FieldViolations) != 1 || br.FieldViolations[0].Field != "messages[1].ticks[1]" ||
		br.FieldViolations[0].Reason != "TICK_REJECT_REASON_CROSSED_QUOTE" {
		t.Fatalf("BadRequest details: %v", br)
	}
	if counts == nil || counts.Accepted != 5 || counts.Rejected != 1 {
		t.Fatalf("PublishResponse details: %v", counts)
	}
	testkit.WaitFor(t, "5 valid ticks on NATS", 5*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == 5 })

	// A clean stream gets the plain response.
	ok, err := client.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	more := ticksdata.Batches("EURUSD", realTicks(t)[6:16], 10, 7)[0]
	if err := ok.Send(&collectorv1.PublishRequest{Source: "replay:test", Payload: &collectorv1.PublishRequest_Ticks{Ticks: more}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ok.CloseAndRecv()
	if err != nil || resp.Accepted != 10 || resp.Rejected != 0 {
		t.Fatalf("clean publish: %v, %v", resp, err)
	}
	syms, err := client.ListSymbols(ctx, &collectorv1.ListSymbolsRequest{})
	if err != nil || len(syms.Symbols) != 1 || syms.Symbols[0].Symbol != "EURUSD" {
		t.Fatalf("ListSymbols: %v, %v", syms, err)
	}
}

func TestStreamAcknowledgesPublishedBatchesAndDeliversSubscribedData(t *testing.T) {
	svc := start(t, testConfig())
	client := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := client.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batches := ticksdata.Batches("EURUSD", realTicks(t)[:20], 10, 1)
	batches[1].Bid[0] = -1 // one bad tick in the second batch
	send := func(r *collectorv1.StreamRequest) {
		t.Helper()
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	send(&collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Subscribe{Subscribe: &collectorv1.SubscribeRequest{Ticks: true}}})
	send(&collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Publish{Publish: &collectorv1.PublishRequest{Source: "s",
		Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: ticksdata.EURUSD()}}}})
	for _, b := range batches {
		send(&collectorv1.StreamRequest{Request: &collectorv1.StreamRequest_Publish{Publish: &collectorv1.PublishRequest{Source: "s",
			Payload: &collectorv1.PublishRequest_Ticks{Ticks: b}}}})
	}
	var acks []*collectorv1.PublishAck
	ticks := 0
	for len(acks) < 2 || ticks < 19 {
		r, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d acks, %d ticks: %v", len(acks), ticks, err)
		}
		if a := r.GetAck(); a != nil {
			acks = append(acks, a)
		}
		if b := r.GetTicks(); b != nil {
			ticks += len(b.TimeMsc)
		}
	}
	if acks[0].Accepted != 10 || acks[1].Accepted != 9 || len(acks[1].Rejects) != 1 ||
		acks[1].Rejects[0].Reason != mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE || acks[1].LastSequence != 20 {
		t.Fatalf("acks %v", acks)
	}
	_ = st.CloseSend()
}

func TestSlowGRPCSubscriberIsCutAndNeverSlowsIngest(t *testing.T) {
	cfg := testConfig()
	cfg.SlowSubscriber = "cut"
	cfg.SubscriberQueue = 8
	svc := start(t, cfg)
	nats := subscribeNATS(t, svc.NATSURL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr())).Subscribe(ctx, &collectorv1.SubscribeRequest{Ticks: true})
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "subscriber registered", 5*time.Second, func() bool { return svc.Hub.Len() == 1 })
	// The subscriber reads nothing while 9,500 ticks go in as single-tick batches.
	ticks := realTicks(t)
	br := dialBridge(t, svc.BridgeAddr())
	br.send(t, hello(9, 1), symbolInfo(2))
	br.welcome(t)
	for i, b := range ticksdata.Batches("EURUSD", ticks, 1, 1) {
		br.send(t, ticksFrame(uint64(3+i), b))
	}
	testkit.WaitFor(t, "every tick on NATS", 20*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == len(ticks) })
	for {
		_, err := sub.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("want RESOURCE_EXHAUSTED, got %v", err)
		}
		break
	}
	if testutil.ToFloat64(svc.Metrics.SubscribersCut) != 1 {
		t.Fatal("cut not counted")
	}
}

func TestHealthAndReflectionServe(t *testing.T) {
	svc := start(t, testConfig())
	cc := dialGRPC(t, svc.GRPCAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "kairos.collector.v1.MarketDataService"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "kairos.collector.v1.MarketDataService") {
		t.Fatalf("reflection lists %v", names)
	}
}

func TestRestartWithStateFileResumesSessionAndEmitsNoBarTwice(t *testing.T) {
	cfg := testConfig()
	cfg.StateFile = t.TempDir() + "/state.json"
	ticks := realTicks(t)[:3000]
	batches := ticksdata.Batches("EURUSD", ticks, 100, 1)
	var bars []*mdv1.Bar

	run := func(first, last int, helloSeq uint64, wantResume uint64, resend []int) {
		svc := start(t, cfg)
		nats := subscribeNATS(t, svc.NATSURL())
		br := dialBridge(t, svc.BridgeAddr())
		br.send(t, hello(7, helloSeq))
		if w := br.welcome(t); w.ResumeAfter != wantResume {
			t.Fatalf("resume_after %d, want %d", w.ResumeAfter, wantResume)
		}
		if helloSeq == 1 {
			br.send(t, symbolInfo(2))
		}
		for _, i := range resend { // frames the bridge did not see acknowledged
			br.send(t, ticksFrame(uint64(3+i), batches[i]))
		}
		next := helloSeq + 1
		if helloSeq == 1 {
			next = 3
		}
		for i := first; i < last; i++ {
			br.send(t, ticksFrame(next, batches[i]))
			next++
		}
		testkit.WaitFor(t, "ack", 5*time.Second, func() bool { return br.maxAck() == next-1 })
		// Bars closed so far: every M1 interval of the ticks sent up to now except the open one.
		closed := len(m1Bars(ticks[:last*100])) - 1 - len(bars)
		testkit.WaitFor(t, "this run's bars on NATS", 5*time.Second, func() bool { _, b, _ := nats.snapshot(); return len(b) >= closed })
		svc.stop(t)
		_, b, _ := nats.snapshot()
		bars = append(bars, b...)
	}
	run(0, 15, 1, 0, nil)
	// After the restart the collector still knows the session; the resent frames are duplicates.
	run(15, 30, 18, 17, []int{13, 14})
	want := m1Bars(ticks)
	want = want[:len(want)-1] // the last bar is still open
	if len(bars) != len(want) {
		t.Fatalf("%d M1 bars over two runs, want %d", len(bars), len(want))
	}
	for i := range want {
		if !sameBar(bars[i], want[i]) {
			t.Fatalf("bar %d across the restart:\n got  %v\n want %v", i, bars[i], want[i])
		}
	}
}

func TestASessionUnknownToTheCollectorStartsWithoutAFalseGap(t *testing.T) {
	svc := start(t, testConfig())
	batches := ticksdata.Batches("EURUSD", realTicks(t)[:300], 100, 1)
	br := dialBridge(t, svc.BridgeAddr())
	// The real bridge sends Hello with sequence 0 and keeps numbering from where it was.
	br.send(t, hello(77, 0), symbolInfo(50), ticksFrame(51, batches[0]), ticksFrame(53, batches[2]))
	if w := br.welcome(t); w.ResumeAfter != 0 {
		t.Fatalf("resume_after %d for an unknown session", w.ResumeAfter)
	}
	testkit.WaitFor(t, "ack 53", 5*time.Second, func() bool { return br.maxAck() == 53 })
	if g := testutil.ToFloat64(svc.Metrics.Bridge.GapFrames); g != 1 {
		t.Fatalf("gap frames %v, want 1 (52 only; 1-49 are not known to be missing)", g)
	}
}
