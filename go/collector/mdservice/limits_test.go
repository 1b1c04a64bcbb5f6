package mdservice_test

import (
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	"github.com/kairos-mt5/kairos/go/collector/ingest"
)

// publishInfo publishes one symbol's info as source over a Publish call and returns the call's code.
func publishInfo(t *testing.T, s *server, source, symbol string) codes.Code {
	t.Helper()
	st, err := s.client.Publish(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&collectorv1.PublishRequest{Source: source, Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: info(symbol)}}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	_, err = st.CloseAndRecv()
	return status.Code(err)
}

func TestPublish_PeerKeyedStateIsBounded(t *testing.T) {
	type step struct{ source, symbol string }
	cases := []struct {
		name        string
		limits      func(*ingest.Config)
		steps       []step
		wantLast    codes.Code
		wantRefused float64 // sources refused
		wantEvicted float64
		wantSymRef  float64
	}{
		{
			name:     "APublisherBeyondMaxSources_WhileTheOthersAreActive_IsRefused",
			limits:   func(c *ingest.Config) { c.MaxSources, c.SourceIdle = 1, time.Hour },
			steps:    []step{{"a", "EURUSD"}, {"b", "EURUSD"}},
			wantLast: codes.ResourceExhausted, wantRefused: 1,
		},
		{
			name:     "APublisherBeyondMaxSources_TakesTheIdlestsPlace",
			limits:   func(c *ingest.Config) { c.MaxSources, c.SourceIdle = 1, 0 },
			steps:    []step{{"a", "EURUSD"}, {"b", "EURUSD"}},
			wantLast: codes.OK, wantEvicted: 1,
		},
		{
			name:     "AKnownPublisher_IsNeverRefused",
			limits:   func(c *ingest.Config) { c.MaxSources, c.SourceIdle = 1, time.Hour },
			steps:    []step{{"a", "EURUSD"}, {"a", "EURUSD"}},
			wantLast: codes.OK,
		},
		{
			name:     "ASymbolBeyondMaxSymbols_IsRefused",
			limits:   func(c *ingest.Config) { c.MaxSymbols = 1 },
			steps:    []step{{"a", "EURUSD"}, {"b", "GBPUSD"}},
			wantLast: codes.ResourceExhausted, wantSymRef: 1,
		},
		{
			name:     "AKnownSymbolFromAnotherPublisher_IsNotASymbolMore",
			limits:   func(c *ingest.Config) { c.MaxSymbols = 1 },
			steps:    []step{{"a", "EURUSD"}, {"b", "EURUSD"}},
			wantLast: codes.OK,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{ingest: c.limits})
			var got codes.Code
			for i, st := range c.steps {
				got = publishInfo(t, s, st.source, st.symbol)
				if i < len(c.steps)-1 && got != codes.OK {
					t.Fatalf("step %d (%s %s): %v", i, st.source, st.symbol, got)
				}
			}

			if got != c.wantLast {
				t.Fatalf("last publish: %v, want %v", got, c.wantLast)
			}
			for name, pair := range map[string][2]float64{
				"sources refused": {testutil.ToFloat64(s.m.SourcesRefused), c.wantRefused},
				"sources evicted": {testutil.ToFloat64(s.m.SourcesEvicted), c.wantEvicted},
				"symbols refused": {testutil.ToFloat64(s.m.SymbolsRefused), c.wantSymRef},
			} {
				if pair[0] != pair[1] {
					t.Fatalf("%s %v, want %v", name, pair[0], pair[1])
				}
			}
		})
	}
}

// publishTicks publishes one tick batch of symbol as source, without announcing it, and returns the
// call's code.
func publishTicks(t *testing.T, s *server, source, symbol string) codes.Code {
	t.Helper()
	st, err := s.client.Publish(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&collectorv1.PublishRequest{Source: source, Payload: &collectorv1.PublishRequest_Ticks{Ticks: ticks(symbol, 3, t0, 10, 1)}}); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	_, err = st.CloseAndRecv()
	return status.Code(err)
}

// Ticks of a symbol nobody announced are rejected and keep no state, so they must not take one of the
// MaxSymbols places: 4,096 junk names would otherwise lock every real symbol out for good. With
// unknown symbols allowed, their ticks do keep state and take a place.
func TestPublish_TicksOfAnUnannouncedSymbol_TakeNoSymbolPlace(t *testing.T) {
	cases := []struct {
		name         string
		allowUnknown bool
		wantTicks    codes.Code
		wantAnnounce codes.Code
		wantSymRef   float64
	}{
		{name: "Unknown symbols refused: the announce that follows gets the place", wantTicks: codes.InvalidArgument, wantAnnounce: codes.OK},
		{name: "Unknown symbols allowed: their ticks took the place", allowUnknown: true, wantTicks: codes.OK, wantAnnounce: codes.ResourceExhausted, wantSymRef: 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{ingest: func(cfg *ingest.Config) {
				cfg.MaxSymbols = 1
				cfg.Validate.AllowUnknownSymbols = c.allowUnknown
			}})
			if got := publishTicks(t, s, "pub", "JUNK1"); got != c.wantTicks {
				t.Fatalf("ticks of JUNK1: %v, want %v", got, c.wantTicks)
			}
			for _, junk := range []string{"JUNK2", "JUNK3"} {
				if got := publishTicks(t, s, "pub", junk); got != codes.InvalidArgument {
					t.Fatalf("ticks of %s: %v, want InvalidArgument (unknown, or no place left)", junk, got)
				}
			}
			if got := publishInfo(t, s, "pub", "EURUSD"); got != c.wantAnnounce {
				t.Fatalf("announcing EURUSD after the junk ticks: %v, want %v", got, c.wantAnnounce)
			}
			if got := testutil.ToFloat64(s.m.SymbolsRefused); got != c.wantSymRef {
				t.Fatalf("symbols refused %v, want %v", got, c.wantSymRef)
			}
		})
	}
}
