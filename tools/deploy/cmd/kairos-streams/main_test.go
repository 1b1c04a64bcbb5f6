package main

import "testing"

func TestSubjectsOverlapFollowsNATSWildcards(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"kairos.md.>", "kairos.md.EURUSD", true},
		{"kairos.md.>", "kairos.md", false},
		{"kairos.md.>", "kairos.bar.>", false},
		{"kairos.bar.*.EURUSD", "kairos.bar.M1.*", true},
		{"kairos.bar.*.EURUSD", "kairos.bar.M1.GBPUSD", false},
		{"kairos.signal.EURUSD", "kairos.signal.EURUSD", true},
		{"kairos.*", "kairos.md.EURUSD", false},
		{">", "anything.at.all", true},
		{"kairos.pred.>", "kairos.pred.>", true},
	}
	for _, c := range cases {
		if got := subjectsOverlap(c.a, c.b); got != c.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := subjectsOverlap(c.b, c.a); got != c.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v (symmetry)", c.b, c.a, got, c.want)
		}
	}
}

func TestCommittedDefinitionsLoad(t *testing.T) {
	streams, err := loadDir("../../../../deploy/nats/streams")
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) < 4 {
		t.Fatalf("want the md, bars, pred and signals streams, got %d", len(streams))
	}
}
