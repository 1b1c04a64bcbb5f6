package natspub_test

// The publisher runs against the real embedded NATS server it starts in production, on a random
// loopback port; subscribers are real NATS clients (and one raw TCP client that never reads).

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/natspub"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func embedded(t *testing.T) *server.Server {
	t.Helper()
	srv, err := natspub.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// inbox is a real NATS subscriber collecting messages by subject.
type inbox struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func subscribe(t *testing.T, srv *server.Server, subject string) *inbox {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	in := &inbox{}
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) { in.mu.Lock(); in.msgs = append(in.msgs, m); in.mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the subscription is registered at the server
		t.Fatal(err)
	}
	return in
}

func (in *inbox) received() []*nats.Msg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]*nats.Msg(nil), in.msgs...)
}

func TestSubjects_AreOneTokenPerSymbol(t *testing.T) {
	cases := []struct {
		symbol, token string
	}{
		{"EURUSD", "EURUSD"},
		{"EURUSD.r", "EURUSD_r"},
		{"US 500*", "US_500_"},
		{"a>b\tc", "a_b_c"},
		{"", "_"},
	}
	for _, c := range cases {
		t.Run(c.symbol, func(t *testing.T) {
			if got := natspub.Token(c.symbol); got != c.token {
				t.Fatalf("Token(%q) = %q, want %q", c.symbol, got, c.token)
			}
			if got := natspub.TickSubject(c.symbol); got != "kairos.md."+c.token {
				t.Fatalf("TickSubject = %q", got)
			}
			if got := natspub.PredSubject(c.symbol); got != "kairos.pred."+c.token {
				t.Fatalf("PredSubject = %q", got)
			}
		})
	}
	for period, want := range map[uint32]string{60: "kairos.bar.M1.EURUSD_r", 3600: "kairos.bar.H1.EURUSD_r", 86400: "kairos.bar.D1.EURUSD_r", 90: "kairos.bar.S90.EURUSD_r"} {
		if got := natspub.BarSubject(&mdv1.Bar{Symbol: "EURUSD.r", PeriodS: period}); got != want {
			t.Fatalf("BarSubject(%d s) = %q, want %q", period, got, want)
		}
	}
}

func TestStartEmbedded(t *testing.T) {
	cases := []struct {
		name, addr string
		wantErr    string
	}{
		{"PortZero_PicksAFreeLoopbackPort", "127.0.0.1:0", ""},
		{"AnAddressWithoutAPort_IsRefused", "127.0.0.1", "embedded NATS address"},
		{"ANonNumericPort_IsRefused", "127.0.0.1:nats", "embedded NATS port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, err := natspub.StartEmbedded(c.addr, "")

			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want one about %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Shutdown()
			addr, ok := srv.Addr().(*net.TCPAddr)
			if !ok || !addr.IP.IsLoopback() || addr.Port == 0 {
				t.Fatalf("listening on %v, want a loopback port", srv.Addr())
			}
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				t.Fatalf("a client cannot connect: %v", err)
			}
			nc.Close()
		})
	}
}

func TestPublisher_PublishesEachKindOnItsSubject(t *testing.T) {
	batch := &mdv1.TickBatch{Symbol: "EURUSD.r", TimeMsc: []int64{1, 2}, Bid: []float64{1.1, 1.1}, Ask: []float64{1.2, 1.2}}
	raw, _ := proto.Marshal(&mdv1.TickBatch{Symbol: "EURUSD.r", TimeMsc: []int64{7}, Bid: []float64{1}, Ask: []float64{2}})
	cases := []struct {
		name         string
		publish      func(p *natspub.Publisher)
		subject      string
		decode       proto.Message
		want         proto.Message
		kind         string
		wantTicksOut float64
	}{
		{
			name:         "Ticks_Encoded",
			publish:      func(p *natspub.Publisher) { p.Ticks(batch, nil) },
			subject:      "kairos.md.EURUSD_r",
			decode:       &mdv1.TickBatch{},
			want:         batch,
			kind:         "md",
			wantTicksOut: 2,
		},
		{
			name:    "Ticks_WithTheirWireBytes_SentAsTheyAre",
			publish: func(p *natspub.Publisher) { p.Ticks(batch, raw) },
			subject: "kairos.md.EURUSD_r",
			decode:  &mdv1.TickBatch{},
			want:    &mdv1.TickBatch{Symbol: "EURUSD.r", TimeMsc: []int64{7}, Bid: []float64{1}, Ask: []float64{2}},
			kind:    "md",
			// The count is of the batch handed in.
			wantTicksOut: 2,
		},
		{
			name:    "Bar",
			publish: func(p *natspub.Publisher) { p.Bar(&mdv1.Bar{Symbol: "EURUSD.r", PeriodS: 300, Open: 1.1, Close: 1.2}) },
			subject: "kairos.bar.M5.EURUSD_r",
			decode:  &mdv1.Bar{},
			want:    &mdv1.Bar{Symbol: "EURUSD.r", PeriodS: 300, Open: 1.1, Close: 1.2},
			kind:    "bar",
		},
		{
			name: "Prediction",
			publish: func(p *natspub.Publisher) {
				p.Prediction(&inferv1.Prediction{Symbol: "EURUSD.r", TimeMsc: 5, ModelName: "m", Outputs: []float32{0.2, 0.8}})
			},
			subject: "kairos.pred.EURUSD_r",
			decode:  &inferv1.Prediction{},
			want:    &inferv1.Prediction{Symbol: "EURUSD.r", TimeMsc: 5, ModelName: "m", Outputs: []float32{0.2, 0.8}},
			kind:    "pred",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := embedded(t)
			in := subscribe(t, srv, "kairos.>")
			m := metrics.New()
			p, err := natspub.Connect("", srv, m) // in process, as the collector does
			if err != nil {
				t.Fatal(err)
			}

			c.publish(p)
			if err := p.Close(5 * time.Second); err != nil {
				t.Fatal(err)
			}

			testkit.WaitFor(t, "the message at the subscriber", 5*time.Second, func() bool { return len(in.received()) == 1 })
			msg := in.received()[0]
			if msg.Subject != c.subject {
				t.Fatalf("subject %q, want %q", msg.Subject, c.subject)
			}
			if err := proto.Unmarshal(msg.Data, c.decode); err != nil || !proto.Equal(c.decode, c.want) {
				t.Fatalf("payload %v (%v), want %v", c.decode, err, c.want)
			}
			if n := testutil.ToFloat64(m.NATSPublished.WithLabelValues(c.kind)); n != 1 {
				t.Fatalf("published{%s} = %v, want 1", c.kind, n)
			}
			if n := testutil.ToFloat64(m.TicksOut.WithLabelValues("nats")); n != c.wantTicksOut {
				t.Fatalf("ticks out{nats} = %v, want %v", n, c.wantTicksOut)
			}
			if n := testutil.ToFloat64(m.NATSErrors); n != 0 {
				t.Fatalf("errors %v, want 0", n)
			}
		})
	}
}

func TestPublisher_OverTCP_ReachesTheServerByURL(t *testing.T) {
	srv := embedded(t)
	in := subscribe(t, srv, "kairos.md.>")
	p, err := natspub.Connect(srv.ClientURL(), nil, metrics.New())
	if err != nil {
		t.Fatal(err)
	}

	p.Ticks(&mdv1.TickBatch{Symbol: "GBPUSD", TimeMsc: []int64{1}, Bid: []float64{1}, Ask: []float64{2}}, nil)
	if err := p.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	testkit.WaitFor(t, "the batch at the subscriber", 5*time.Second, func() bool { return len(in.received()) == 1 })
	if s := in.received()[0].Subject; s != "kairos.md.GBPUSD" {
		t.Fatalf("subject %q", s)
	}
}

func TestPublisher_AfterClose_CountsErrorsInsteadOfPublishing(t *testing.T) {
	srv := embedded(t)
	m := metrics.New()
	p, err := natspub.Connect("", srv, m)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(time.Second); err != nil {
		t.Fatal(err)
	}

	p.Bar(&mdv1.Bar{Symbol: "EURUSD", PeriodS: 60})
	p.Ticks(&mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1}, Bid: []float64{1}, Ask: []float64{2}}, []byte{1})

	if n := testutil.ToFloat64(m.NATSErrors); n != 2 {
		t.Fatalf("errors %v, want 2", n)
	}
	if n := testutil.ToFloat64(m.NATSPublished.WithLabelValues("bar")) + testutil.ToFloat64(m.NATSPublished.WithLabelValues("md")); n != 0 {
		t.Fatalf("published %v after close, want 0", n)
	}
}

func TestEmbeddedServer_CutsASubscriberThatStopsReading_AndTheOthersGetEverything(t *testing.T) {
	srv := embedded(t)
	healthy := subscribe(t, srv, "kairos.md.>")
	// A raw client subscribes, waits for the server to confirm, and never reads again.
	conn, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB kairos.md.> 1\r\nPING\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(conn)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("no PONG from the server: %v", err)
		}
		if strings.HasPrefix(line, "PONG") {
			break
		}
	}
	m := metrics.New()
	p, err := natspub.Connect("", srv, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	payload := make([]float64, 128<<10) // 1 MiB of bids per batch
	const batches = 32

	start := time.Now()
	for i := range batches {
		p.Ticks(&mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{int64(i)}, Bid: payload}, nil)
	}
	if err := p.Conn().FlushTimeout(10 * time.Second); err != nil {
		t.Fatalf("flush with a stalled subscriber: %v", err)
	}
	took := time.Since(start)

	if took > 10*time.Second {
		t.Fatalf("publishing took %v: the stalled subscriber held the publisher back", took)
	}
	testkit.WaitFor(t, "the healthy subscriber to get every batch", 10*time.Second, func() bool { return len(healthy.received()) == batches })
	testkit.WaitFor(t, "the server to cut the stalled subscriber as a slow consumer", 10*time.Second, func() bool { return srv.NumSlowConsumers() >= 1 })
	if n := testutil.ToFloat64(m.NATSErrors); n != 0 {
		t.Fatalf("publish errors %v, want 0", n)
	}
}

// TestPublisher_Bar_whenSymbolsAndPeriodsInterleave_thenEachOnItsSubject: bars of several symbols,
// more periods than the publisher keeps for the last symbol, symbols coming back after others and
// one whose name is not UTF-8 (refused by the encoder, counted as an error) each go to their own
// subject, in order.
func TestPublisher_Bar_whenSymbolsAndPeriodsInterleave_thenEachOnItsSubject(t *testing.T) {
	srv := embedded(t)
	in := subscribe(t, srv, "kairos.bar.>")
	m := metrics.New()
	p, err := natspub.Connect("", srv, m)
	if err != nil {
		t.Fatal(err)
	}
	periods := []uint32{60, 300, 900, 3600, 7200, 14400, 86400, 604800, 30, 120} // 10 > the 8 kept
	var want []string
	for round := range 3 {
		for _, sym := range []string{"EURUSD", "GBPUSD.r", "bad\xff", "EURUSD"} {
			for i, period := range periods {
				p.Bar(&mdv1.Bar{Symbol: sym, PeriodS: period, OpenTimeMsc: int64(round*100 + i)})
				if sym != "bad\xff" {
					want = append(want, natspub.BarSubject(&mdv1.Bar{Symbol: sym, PeriodS: period}))
				}
			}
		}
	}
	if err := p.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, "every bar at the subscriber", 5*time.Second, func() bool { return len(in.received()) == len(want) })
	for i, msg := range in.received() {
		if msg.Subject != want[i] {
			t.Fatalf("bar %d on %q, want %q", i, msg.Subject, want[i])
		}
	}
	if n := testutil.ToFloat64(m.NATSErrors); n != float64(3*len(periods)) {
		t.Fatalf("errors %v, want %d (the non-UTF-8 symbol's bars)", n, 3*len(periods))
	}
}
