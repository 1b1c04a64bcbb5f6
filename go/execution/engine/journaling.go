// Journal encoding: how engine steps become journal entries, and the append-then-wait protocol
// (append under the lock, wait for durability outside it).

package engine

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
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
		return t, fmt.Errorf("%w: %v", ErrJournal, err)
	}
	return t, nil
}

func (e *Engine) wait(t journal.Ticket) error {
	start := time.Now()
	err := t.Wait()
	e.m.Observe(metrics.StageJournal, time.Since(start))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrJournal, err)
	}
	return nil
}
