package natspub_test

// JetStream publishing against a real JetStream-enabled nats-server (in process, loopback, its
// store in a temporary directory): Stored follows what the server stored, never runs ahead of it.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/natspub"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func jetStreamServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// mdStream creates KAIROS_MD on the server at url, connected with opts (credentials of an identity
// allowed to administer streams, where the server has any).
func mdStream(t *testing.T, url string, opts ...nats.Option) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(testkit.Context(t, 10*time.Second), jetstream.StreamConfig{Name: "KAIROS_MD",
		Subjects: []string{"kairos.md.>"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func batch(first uint64, n int) *mdv1.TickBatch {
	b := &mdv1.TickBatch{Symbol: "EURUSD"}
	for i := range n {
		b.TimeMsc = append(b.TimeMsc, 1_600_000_000_000+int64(first)+int64(i))
		b.Bid = append(b.Bid, 1.1)
		b.Ask = append(b.Ask, 1.1001)
		b.Sequence = append(b.Sequence, first+uint64(i))
	}
	return b
}

func TestJetStream_WhenTheStreamStoresTheBatches_StoredReturnsAndEachIsStoredOnce(t *testing.T) {
	srv := jetStreamServer(t)
	st := mdStream(t, srv.ClientURL())
	p, err := natspub.ConnectJetStream(srv.ClientURL(), time.Second, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)

	for i := range 50 {
		p.Ticks(batch(uint64(1+10*i), 10), nil)
	}
	p.Ticks(batch(1, 10), nil) // the first batch again, as after a lost acknowledgement

	if err := p.Stored(testkit.Context(t, 10*time.Second), p.Published()); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(testkit.Context(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if p.Published() != 51 || info.State.Msgs != 50 {
		t.Fatalf("published %d, stream holds %d messages; want 51 published, 50 stored (one duplicate id)", p.Published(), info.State.Msgs)
	}
}

func TestJetStream_WhenNoStreamTakesTheSubject_StoredWaitsUntilItsContextEnds(t *testing.T) {
	srv := jetStreamServer(t) // JetStream on, but no stream captures kairos.md.>
	p, err := natspub.ConnectJetStream(srv.ClientURL(), 200*time.Millisecond, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(100 * time.Millisecond)

	p.Ticks(batch(1, 5), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = p.Stored(ctx, p.Published())

	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stored = %v, want the context's deadline: nothing was stored", err)
	}
}

func TestJetStream_WhenTheStreamAppearsLate_TheBatchIsPublishedAgainUntilStored(t *testing.T) {
	srv := jetStreamServer(t)
	m := metrics.New()
	p, err := natspub.ConnectJetStream(srv.ClientURL(), 200*time.Millisecond, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	p.Ticks(batch(1, 5), nil)
	testkit.WaitFor(t, "a failed publish (no stream yet)", 10*time.Second, func() bool { return testutil.ToFloat64(m.NATSErrors) >= 1 })

	st := mdStream(t, srv.ClientURL())

	if err := p.Stored(testkit.Context(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(testkit.Context(t, 5*time.Second))
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream info %v, err %v; want the one batch stored", info, err)
	}
}

func TestJetStream_WithoutAnExternalServer_IsRefused(t *testing.T) {
	if _, err := natspub.ConnectJetStream("", time.Second, metrics.New()); err == nil {
		t.Fatal("ConnectJetStream without a URL succeeded")
	}
}

// A terminal restarted numbers its ticks from 1 again: the new session's batches carry the old one's
// numbers but other ticks, and are stored, not dropped as duplicates within the window.
func TestJetStream_ANewSessionsRenumberedTicksAreStoredNotDeduplicated(t *testing.T) {
	srv := jetStreamServer(t)
	st := mdStream(t, srv.ClientURL())
	p, err := natspub.ConnectJetStream(srv.ClientURL(), time.Second, metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(time.Second)
	old := batch(1, 10)
	renumbered := batch(1, 10)
	for i := range renumbered.TimeMsc {
		renumbered.TimeMsc[i] += 3_600_000 // an hour later, numbered from 1 by the new session
	}
	p.Ticks(old, nil)
	p.Ticks(renumbered, nil)
	p.Ticks(old, nil) // a repeat of the same ticks is still one message
	if err := p.Stored(testkit.Context(t, 10*time.Second), p.Published()); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(testkit.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stored %d messages, want 2 (both sessions' batches, the repeat once)", info.State.Msgs)
	}
}
