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
