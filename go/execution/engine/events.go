// Venue events: what the venue reports (accepted, rejected, filled, ...) driven through the order
// state machine, the book and the journal.

package engine

import (
	"context"

	"errors"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// applyEvents applies venue events under e.mu and returns the journal entries they produce.
func (e *Engine) applyEvents(evs []venue.Event, entries []journal.Entry, now int64) []journal.Entry {
	filled := false
	defer func() {
		if filled {
			e.publishPnLLocked() // realized P&L moved; cheap next to the fill's journal write
		}
	}()
	for _, ev := range evs {
		if ev.Raw != nil {
			kind := journal.KindVenueResponse
			if ev.RawIsRequest {
				kind = journal.KindVenueRequest
			}
			entries = append(entries, anyEntry(kind, ev.RawKey, ev.Raw))
		}
		if ev.Kind == 0 {
			continue // a venue message recorded for the journal only
		}
		if ev.Kind == venue.ProtectionRejected {
			entries = e.protectionRejectedLocked(ev, entries, now)
			continue
		}
		r, ok := e.orders[ev.ClientOrderID]
		if !ok && ev.ClientOrderID != "" {
			r, ok = e.restoreEvictedLocked(ev.ClientOrderID) // ADR 0125
		}
		if !ok && ev.Kind == venue.ProtectiveFill && ev.ClientOrderID != "" && ev.Symbol != "" {
			r, ok = e.protectiveOrderLocked(ev, now), true
		}
		if !ok {
			if e.m != nil {
				e.m.UnknownEvents.WithLabelValues(ev.Kind.String()).Inc()
			}
			e.log.Warn("venue event for an unknown order", "event", ev.Kind.String(), "client_order_id", ev.ClientOrderID, "venue_order_id", ev.VenueOrderID)
			continue
		}
		o := r.o
		from := o.Status
		if ev.VenueOrderID != "" {
			o.VenueOrderID = ev.VenueOrderID
		}
		var (
			typ    execv1.ReportType
			fe     fsm.Event
			fill   *execv1.Fill
			reason = ev.Reason
		)
		switch ev.Kind {
		case venue.Accepted:
			typ, fe = execv1.ReportType_REPORT_TYPE_ACCEPTED, fsm.EvAccept
		case venue.Rejected:
			typ, fe = execv1.ReportType_REPORT_TYPE_REJECTED, fsm.EvReject
			o.RejectReason = ev.Reason
		case venue.Canceled:
			typ, fe = execv1.ReportType_REPORT_TYPE_CANCELED, fsm.EvCancel
		case venue.CancelRejected:
			typ, fe = execv1.ReportType_REPORT_TYPE_CANCEL_REJECTED, fsm.EvCancelReject
		case venue.Expired:
			typ, fe = execv1.ReportType_REPORT_TYPE_EXPIRED, fsm.EvExpire
		case venue.Triggered:
			typ, fe = execv1.ReportType_REPORT_TYPE_UPDATED, fsm.EvTrigger
		case venue.Filled, venue.ProtectiveFill:
			typ, fe = execv1.ReportType_REPORT_TYPE_FILLED, fsm.EvFill
		case venue.Updated:
			typ, fe = execv1.ReportType_REPORT_TYPE_UPDATED, fsm.EvUpdate
		case venue.UpdateRejected:
			typ, fe = execv1.ReportType_REPORT_TYPE_UPDATE_REJECTED, fsm.EvUpdateReject
			if o.Status != fsm.PendingUpdate {
				// The order moved on meanwhile (a fill): the modification is simply dropped.
				o.Pending = nil
				entries = append(entries, e.reportEntry(typ, r, nil, reason, now))
				continue
			}
		}
		if r.sent != 0 && (fe == fsm.EvAccept || fe == fsm.EvReject || fe == fsm.EvFill) {
			e.m.Observe(metrics.StageVenueAck, time.Duration(now-r.sent)*time.Microsecond)
			r.sent = 0
			r.hops = append(r.hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_VENUE_ACK, TimeUs: now})
		}
		var (
			err       error
			netBefore decimal.D
			moved     bool
		)
		if fe == fsm.EvFill {
			if prev, dup := e.trades[ev.Fill.TradeID]; dup {
				if e.m != nil {
					e.m.DuplicateFills.Inc()
				}
				if prev.order == o.ClientOrderID && prev.commission.Less(ev.Fill.Commission) {
					// The same deal again, now with its commission (MT5: the order result carries
					// the fill, the DEAL_ADD transaction the commission): merge, never add the
					// quantity twice.
					entries = e.mergeCommissionLocked(r, ev.Fill, prev, entries, now)
					filled = true
					continue
				}
				e.log.Info("duplicate fill dropped", "trade_id", ev.Fill.TradeID, "client_order_id", ev.ClientOrderID, "first_order", prev.order)
				continue
			}
			err = o.ApplyFill(ev.Fill, now)
			if err == nil {
				e.trades[ev.Fill.TradeID] = trade{order: o.ClientOrderID, commission: ev.Fill.Commission}
				inst, _ := e.opt.Risk.Instrument(o.Symbol)
				signed := ev.Fill.Quantity
				if o.Side == fsm.Sell {
					signed = signed.Neg()
				}
				if inst != nil {
					netBefore, moved = e.opt.Book.Net(o.Symbol), true
					e.opt.Book.ApplyFill(inst, signed, ev.Fill.Price, ev.Fill.Commission, now)
				}
				if !o.Status.Open() {
					o.Pending = nil
				}
				fill = fillProto(o, ev.Fill)
				filled = true
				if e.m != nil {
					e.m.Fills.WithLabelValues(o.Venue, o.Symbol).Inc()
				}
			} else if errors.Is(err, fsm.ErrOverfill) && e.m != nil {
				e.m.Overfills.Inc()
			}
		} else {
			if fe == fsm.EvAccept && from != fsm.Submitted && from != fsm.Initialized && from != fsm.PendingCancel && from != fsm.PendingUpdate {
				// An acceptance that arrives after a fill (MT5 reports the deal first) changes
				// nothing but the venue id, which is already recorded.
				if o.VenueOrderID != "" && from != fsm.Accepted {
					entries = append(entries, e.reportEntry(execv1.ReportType_REPORT_TYPE_UPDATED, r, nil, "venue order id "+o.VenueOrderID, now))
				}
				continue
			}
			err = o.Apply(fe, now)
			switch {
			case err == nil && fe == fsm.EvUpdate:
				o.ApplyAmend()
			case err == nil && fe == fsm.EvUpdateReject:
				o.Pending = nil
			}
		}
		if err != nil {
			if e.m != nil {
				e.m.InvalidEvents.WithLabelValues(ev.Kind.String()).Inc()
			}
			e.log.Warn("venue event refused by the order state machine", "err", err, "event", ev.Kind.String(), "client_order_id", o.ClientOrderID, "status", o.Status.String())
			continue
		}
		e.setStatus(o, from)
		e.opt.Risk.Track(o)
		entries = append(entries, e.reportEntry(typ, r, fill, reason, now))
		if moved {
			entries = e.protectAfterFillLocked(o, netBefore, entries, now)
		}
	}
	return entries
}

// mergeCommissionLocked books the commission a repeated deal adds over what was booked with its
// first report, and journals the merged fill (full quantity, total commission) as an UPDATED
// report, which replay merges the same way.
func (e *Engine) mergeCommissionLocked(r *record, f fsm.Fill, prev trade, entries []journal.Entry, now int64) []journal.Entry {
	o := r.o
	e.opt.Book.Charge(o.Symbol, f.Commission.Sub(prev.commission), now)
	e.trades[f.TradeID] = trade{order: prev.order, commission: f.Commission}
	return append(entries, e.reportEntry(execv1.ReportType_REPORT_TYPE_UPDATED, r, fillProto(o, f), "commission of trade "+f.TradeID, now))
}

// OnVenueEvents applies events that arrive asynchronously (MT5 results and transactions) and
// returns once they are durable, so the caller may acknowledge them to the venue.
func (e *Engine) OnVenueEvents(evs []venue.Event) error {
	e.mu.Lock()
	now := e.opt.Clock()
	entries := e.applyEvents(evs, nil, now)
	t, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.wait(context.Background(), t)
}
