package fanout

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

func TestASubscriberQueueIsBoundedInBytesAsWellAsEvents(t *testing.T) {
	one := int(proto.Size(batch("EURUSD", 1)))
	cases := []struct {
		name     string
		policy   Policy
		wantCut  bool
		wantSeqs []uint64
	}{
		// Room for 100 events but two batches' bytes: the third overflows as a full queue would.
		{name: "UnderCut_ASubscriberOverItsBytesIsCut", policy: Cut, wantCut: true},
		{name: "UnderConflate_ASubscriberOverItsBytesGetsTheLatest", policy: Conflate, wantSeqs: []uint64{1, 2, 10}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := New(100, c.policy, metrics.New())
			h.SetQueueBytes(2 * one)
			s := h.Subscribe(Filter{Ticks: true})
			defer s.Close()

			for seq := uint64(1); seq <= 10; seq++ {
				h.PublishTicks(batch("EURUSD", seq))
			}

			if c.wantCut {
				if s.Err() != ErrTooSlow {
					t.Fatalf("err %v, want cut as too slow", s.Err())
				}
				return
			}
			var seqs []uint64
			for _, e := range drain(t, s) {
				seqs = append(seqs, e.Ticks.Sequence[0])
			}
			if len(seqs) != len(c.wantSeqs) || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 10 {
				t.Fatalf("got %v, want %v", seqs, c.wantSeqs)
			}
		})
	}
}

func TestABatchLargerThanTheWholeByteBoundStillPassesAlone(t *testing.T) {
	h := New(100, Cut, metrics.New())
	h.SetQueueBytes(1)
	s := h.Subscribe(Filter{Ticks: true})
	defer s.Close()

	h.PublishTicks(batch("EURUSD", 1))

	if evs := drain(t, s); len(evs) != 1 || s.Err() != nil {
		t.Fatalf("got %d events, err %v; want the one batch", len(evs), s.Err())
	}
}
