// Journal encoding: how engine steps become journal entries, and the append-then-wait protocol
// (append under the lock, wait for durability outside it).

package engine

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/internal/fault"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// riskPassed is the journal payload of a passed risk check (an empty RiskDenial), built once.
var riskPassed = anyEntry(journal.KindRisk, "", &execv1.RiskDenial{}).Payload

func anyEntry(kind journal.Kind, key string, m proto.Message) journal.Entry {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages that cannot be marshalled: a programming error
	}
	b, _ := proto.Marshal(a)
	return journal.Entry{Kind: kind, Key: key, Payload: b}
}

func (e *Engine) reportEntry(typ execv1.ReportType, r *record, f *execv1.Fill, reason string, nowUS int64) journal.Entry {
	rep := &execv1.ExecutionReport{Type: typ, Fill: f, Reason: reason, Hops: r.hops, TimeUs: nowUS}
	rep.Order = OrderProto(r.o)
	b, _ := proto.Marshal(rep)
	return journal.Entry{Kind: journal.KindReport, Key: r.o.ClientOrderID, Payload: b}
}

func marshalReport(rep *execv1.ExecutionReport) []byte {
	b, _ := proto.Marshal(rep)
	return b
}

func (e *Engine) stateEntry(s risk.State, reason string, nowUS int64) journal.Entry {
	rep := &execv1.ExecutionReport{Type: execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED, TradingState: execv1.TradingState(s), Reason: reason, TimeUs: nowUS}
	b, _ := proto.Marshal(rep)
	return journal.Entry{Kind: journal.KindReport, Payload: b}
}

// append journals entries under e.mu; the caller waits on the ticket after unlocking.
func (e *Engine) append(nowUS int64, entries []journal.Entry) (journal.Ticket, error) {
	if len(entries) == 0 {
		return journal.Ticket{}, nil
	}
	t, _, err := e.opt.Journal.Append(nowUS, entries...)
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrJournal, err)
		e.journalFailedLocked(err)
		return t, err
	}
	return t, nil
}

// wait waits, without e.mu, until t is durable: at most JournalTimeout, less if ctx ends first. A
// journal that fails or does not answer in time fails the engine (journalFailed); a caller that
// leaves early only gets its context's error, and the write goes on.
func (e *Engine) wait(ctx context.Context, t journal.Ticket) error {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, e.opt.JournalTimeout)
	err := t.Wait(wctx)
	cancel()
	e.m.Observe(metrics.StageJournal, time.Since(start))
	if err == nil {
		fault.Point("after-append") // durable, not yet acknowledged (or, write-ahead, not yet sent)
		return nil
	}
	if ctx.Err() != nil {
		// The caller left (or its own deadline passed) first: the write goes on, and a journal
		// that really failed is caught by watchJournal.
		return ctx.Err()
	}
	err = fmt.Errorf("%w: %v", ErrJournal, err)
	e.mu.Lock()
	e.journalFailedLocked(err)
	e.mu.Unlock()
	return err
}

// journalFailedLocked fails the engine once, under e.mu, when the journal cannot write or stalls:
// trading goes HALTED (journaled if the journal still takes it), the failure gauge and counter move,
// and JournalFailed is closed so the service reports NOT_SERVING. Nothing is acknowledged after
// this: every later submission fails with ErrJournal. Only a restart, which replays what is
// durable and reconciles, clears it.
func (e *Engine) journalFailedLocked(err error) {
	if e.m != nil {
		e.m.JournalFailures.Inc()
	}
	if e.jerr != nil {
		return
	}
	e.jerr = err
	close(e.jdown)
	prev := e.opt.Risk.SetState(risk.Halted)
	e.lastState, e.hasState = risk.Halted, true
	e.setStateGauge()
	if e.m != nil {
		e.m.JournalHealthy.Set(0)
	}
	e.log.Error("journal failed: trading HALTED, nothing more is acknowledged until a restart", "err", err, "previous_state", prev.String())
	// Best effort: a stalled store may still take it; a failed one refuses at once.
	now := e.opt.Clock()
	if _, _, aerr := e.opt.Journal.Append(now, e.stateEntry(risk.Halted, "journal failed: "+err.Error(), now)); aerr != nil {
		e.log.Warn("the HALTED state could not be journaled", "err", aerr)
	}
}

// watchJournal fails the engine when the journal fails on its own (a stalled write timing out
// while no caller waits any more), until Close.
func (e *Engine) watchJournal() {
	select {
	case <-e.opt.Journal.Failed():
		e.mu.Lock()
		e.journalFailedLocked(fmt.Errorf("%w: %v", ErrJournal, e.opt.Journal.Err()))
		e.mu.Unlock()
	case <-e.stop:
	}
}

// JournalFailed is closed once the journal has failed (see journalFailedLocked).
func (e *Engine) JournalFailed() <-chan struct{} { return e.jdown }

// JournalErr returns the journal failure, or nil.
func (e *Engine) JournalErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.jerr
}
