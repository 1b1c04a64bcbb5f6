package mt5

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// openOrders is an Engine whose only answer that matters is its open orders.
type openOrders struct{ ids []string }

func (e *openOrders) OnVenueEvents([]venue.Event) error                   { return nil }
func (e *openOrders) OnAccount(risk.Account) error                        { return nil }
func (e *openOrders) Reconcile(context.Context, *engine.Snapshot) error   { return nil }
func (e *openOrders) Unreconcile(string)                                  {}
func (e *openOrders) CancelAll(context.Context, string) ([]string, error) { return nil, nil }
func (e *openOrders) OpenOrders() []fsm.Order {
	out := make([]fsm.Order, len(e.ids))
	for i, id := range e.ids {
		out[i] = fsm.Order{ClientOrderID: id}
	}
	return out
}

func boundedVenue(maxTracked int) *Venue {
	return New(Config{MaxTracked: maxTracked}, slog.New(slog.DiscardHandler), nil, func(string) uint8 { return 5 })
}

func TestTheCommandMapEvictsAnsweredCommandsFirst(t *testing.T) {
	v := boundedVenue(16)
	var ids []uint64
	for i := range 16 {
		ids = append(ids, v.Request(venue.Place, &fsm.Order{ClientOrderID: fmt.Sprintf("K-%d", i), Symbol: "EURUSD"}).ID)
	}
	// The even ones were answered; the odd ones still wait for their result.
	s := &session{v: v, queries: map[uint64]bool{}}
	for i, id := range ids {
		if i%2 == 0 {
			s.onResult(&bridgev1.OrderResult{CommandId: id, Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT, Retcode: RetPlaced, OrderTicket: uint64(1000 + i)})
		}
	}
	for i := range 5 { // past MaxTracked plus its slack: one sweep
		v.Request(venue.Place, &fsm.Order{ClientOrderID: fmt.Sprintf("N-%d", i), Symbol: "EURUSD"})
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cmds) != 16 {
		t.Fatalf("%d commands tracked, want 16", len(v.cmds))
	}
	for i, id := range ids {
		if _, kept := v.cmds[id]; i%2 == 1 && !kept {
			t.Fatalf("unanswered command %d was evicted while answered ones could go", i)
		}
	}
	if got := testutil.ToFloat64(v.evicted.WithLabelValues("commands", "completed")); got != 5 {
		t.Fatalf("completed evictions %v, want 5", got)
	}
	if got := testutil.ToFloat64(v.evicted.WithLabelValues("commands", "capacity")); got != 0 {
		t.Fatalf("capacity evictions %v, want 0", got)
	}
}

func TestTheCommandMapStaysBoundedWhenNothingIsAnswered(t *testing.T) {
	v := boundedVenue(16)
	for i := range 100 {
		v.Request(venue.Query, &fsm.Order{ClientOrderID: fmt.Sprintf("K-%d", i)})
	}
	v.mu.Lock()
	n := len(v.cmds)
	v.mu.Unlock()
	if n > 20 {
		t.Fatalf("%d commands tracked, want at most 16 plus a quarter", n)
	}
	if testutil.ToFloat64(v.evicted.WithLabelValues("commands", "capacity")) == 0 {
		t.Fatal("no capacity eviction counted")
	}
}

func TestTheTicketMapsKeepOpenOrdersAndDropCompletedOnes(t *testing.T) {
	v := boundedVenue(16)
	eng := &openOrders{ids: []string{"K-0", "K-1", "K-2"}}
	v.SetEngine(eng)
	v.mu.Lock()
	for i := range 40 { // peer-reported client order ids (transactions, snapshots) included
		v.setTicket(fmt.Sprintf("K-%d", i), uint64(5000+i))
	}
	v.mu.Unlock()
	v.trimTickets()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.tickets) != 16 || len(v.byTicket) != 16 || len(v.ticketAt) != 16 {
		t.Fatalf("maps %d/%d/%d, want 16 each", len(v.tickets), len(v.byTicket), len(v.ticketAt))
	}
	for _, id := range eng.ids {
		if v.tickets[id] == 0 {
			t.Fatalf("open order %s lost its ticket", id)
		}
	}
	if v.tickets["K-39"] == 0 || v.tickets["K-3"] != 0 {
		t.Fatal("the oldest completed tickets should go first, the newest stay")
	}
	if got := testutil.ToFloat64(v.evicted.WithLabelValues("tickets", "completed")); got != 24 {
		t.Fatalf("completed ticket evictions %v, want 24", got)
	}
}

// reconciling is an Engine that records the snapshots it is asked to reconcile against.
type reconciling struct {
	openOrders
	snaps []*engine.Snapshot
}

func (e *reconciling) Reconcile(_ context.Context, snap *engine.Snapshot) error {
	e.snaps = append(e.snaps, snap)
	return nil
}

// snapshotFrame is a PositionSnapshot of time_msc t with n EURUSD positions and m working orders.
func snapshotFrame(t int64, n, m int, complete bool) *bridgev1.PositionSnapshot {
	p := &bridgev1.PositionSnapshot{TimeMsc: t, Complete: complete}
	for range n {
		p.Positions = append(p.Positions, &bridgev1.Position{Symbol: "EURUSD", Side: bridgev1.Side_SIDE_BUY})
	}
	for i := range m {
		p.Orders = append(p.Orders, &bridgev1.WorkingOrder{Ticket: uint64(7000 + i)})
	}
	return p
}

func TestASnapshotPastMaxTrackedEntriesIsDroppedWholeAndNeverReconciled(t *testing.T) {
	cases := []struct {
		name        string
		frames      []*bridgev1.PositionSnapshot
		wantEntries int // positions and orders reconciled; -1: no reconciliation
		wantDropped float64
	}{
		{"ASnapshotAtTheBound_IsReconciled", []*bridgev1.PositionSnapshot{snapshotFrame(1000, 10, 0, false), snapshotFrame(1000, 4, 2, true)}, 16, 0},
		{"AnUnfinishedSnapshotPastTheBound_IsDroppedEvenWhenItsLastFrameCompletes",
			[]*bridgev1.PositionSnapshot{snapshotFrame(1000, 10, 0, false), snapshotFrame(1000, 5, 2, false), snapshotFrame(1000, 1, 0, true)}, -1, 1},
		{"ASingleFramePastTheBound_IsDropped", []*bridgev1.PositionSnapshot{snapshotFrame(1000, 17, 0, true)}, -1, 1},
		{"ANewerSnapshotWithinTheBound_IsReconciledAfterADroppedOne",
			[]*bridgev1.PositionSnapshot{snapshotFrame(1000, 20, 0, false), snapshotFrame(1000, 1, 0, true), snapshotFrame(2000, 3, 1, true)}, 4, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := boundedVenue(16)
			eng := &reconciling{}
			v.SetEngine(eng)
			s := &session{v: v, queries: map[uint64]bool{}, snap: &engine.Snapshot{}}
			for _, f := range c.frames {
				s.onPositions(f)
			}
			if err := s.maybeReconciled(context.Background()); err != nil {
				t.Fatal(err)
			}
			switch {
			case c.wantEntries < 0 && len(eng.snaps) != 0:
				t.Fatalf("reconciled against %d positions and %d orders, want no reconciliation", len(eng.snaps[0].Positions), len(eng.snaps[0].Orders))
			case c.wantEntries >= 0 && len(eng.snaps) != 1:
				t.Fatalf("%d reconciliations, want 1", len(eng.snaps))
			case c.wantEntries >= 0 && len(eng.snaps[0].Positions)+len(eng.snaps[0].Orders) != c.wantEntries:
				t.Fatalf("reconciled against %d entries, want %d", len(eng.snaps[0].Positions)+len(eng.snaps[0].Orders), c.wantEntries)
			}
			if got := testutil.ToFloat64(v.evicted.WithLabelValues("snapshot", "capacity")); got != c.wantDropped {
				t.Fatalf("dropped snapshots counted %v, want %v", got, c.wantDropped)
			}
		})
	}
}
