// Package validate decides, tick by tick, whether market data may go downstream: finite positive
// prices, no crossed quotes unless allowed, announced symbols, sane timestamps and unseen sequence
// numbers. One Validator holds the per-symbol state of one source (a bridge session or a named
// gRPC publisher); it is not safe for concurrent use.
package validate

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// MT5 TICK_FLAG_* bits that say which prices a tick carries.
const (
	FlagBid  = 2
	FlagAsk  = 4
	FlagLast = 8
)

// Reason is why a tick was rejected (the contract's enum).
type Reason = mdv1.TickRejectReason

// NumReasons bounds the Reason values, for fixed-size per-reason counters.
const NumReasons = int(mdv1.TickRejectReason_TICK_REJECT_REASON_MALFORMED_BATCH) + 1

// Config sets the tolerances. The zero value is strict (no tolerance, symbols must be announced).
type Config struct {
	// FutureTolerance is how far ahead of the receiver's clock a tick time may be.
	FutureTolerance time.Duration
	// BackwardsTolerance is how far a tick time may go back from the latest accepted time of its symbol.
	BackwardsTolerance time.Duration
	// AllowCrossed accepts bid > ask (for sources whose books legitimately cross).
	AllowCrossed bool
	// AllowUnknownSymbols accepts ticks of symbols the source never announced.
	AllowUnknownSymbols bool
}

// Rejection names one rejected tick.
type Rejection struct {
	Index  int // position of the tick in its batch
	Reason Reason
	Detail string
}

// Result is the outcome of validating one batch.
type Result struct {
	// Accepted holds the accepted ticks (the input batch itself when every tick passed); nil if none.
	Accepted *mdv1.TickBatch
	// Counts of rejected ticks by Reason.
	Rejects [NumReasons]uint64
	// Rejected lists rejected ticks, at most maxListed of them.
	Rejected []Rejection
	// RejectedTotal counts every rejected tick.
	RejectedTotal uint64
	// SequenceGaps counts ticks missing between consecutive accepted sequence numbers.
	SequenceGaps uint64
}

const maxListed = 100

type symbolState struct {
	info     *mdv1.SymbolInfo
	lastTime int64  // latest accepted tick time, ms
	lastSeq  uint64 // highest accepted tick sequence
}

// Validator validates the ticks of one source.
type Validator struct {
	cfg      Config
	slowOnly bool // tests: judge every batch tick by tick, to check the fast path against it
	now      func() time.Time
	symbols  map[string]*symbolState
}

// New returns a Validator; now is the clock for the future-timestamp check (time.Now if nil).
func New(cfg Config, now func() time.Time) *Validator {
	if now == nil {
		now = time.Now
	}
	return &Validator{cfg: cfg, now: now, symbols: map[string]*symbolState{}}
}

// Announce records a symbol's metadata; ticks of unannounced symbols are rejected unless allowed.
func (v *Validator) Announce(info *mdv1.SymbolInfo) error {
	if info.GetSymbol() == "" {
		return fmt.Errorf("symbol info without a symbol name")
	}
	if p := info.GetPoint(); math.IsNaN(p) || math.IsInf(p, 0) || p < 0 {
		return fmt.Errorf("symbol %s: point %v is not a finite non-negative number", info.GetSymbol(), p)
	}
	s := v.symbols[info.GetSymbol()]
	if s == nil {
		s = &symbolState{}
		v.symbols[info.GetSymbol()] = s
	}
	s.info = info
	return nil
}

// Known reports whether the symbol was announced.
func (v *Validator) Known(symbol string) bool {
	s := v.symbols[symbol]
	return s != nil && s.info != nil
}

// State is a symbol's validation watermark, saved across restarts.
type State struct {
	LastTimeMsc  int64  `json:"last_time_msc"`
	LastSequence uint64 `json:"last_sequence"`
	// Info is the announced SymbolInfo (protobuf binary), so a resumed source need not announce again.
	Info []byte `json:"info,omitempty"`
}

// Snapshot returns the per-symbol watermarks.
func (v *Validator) Snapshot() map[string]State {
	out := make(map[string]State, len(v.symbols))
	for name, s := range v.symbols {
		st := State{LastTimeMsc: s.lastTime, LastSequence: s.lastSeq}
		if s.info != nil {
			st.Info, _ = proto.Marshal(s.info)
		}
		out[name] = st
	}
	return out
}

// Restore loads watermarks and announcements saved by Snapshot.
func (v *Validator) Restore(st map[string]State) error {
	for name, w := range st {
		s := v.symbols[name]
		if s == nil {
			s = &symbolState{}
			v.symbols[name] = s
		}
		s.lastTime, s.lastSeq = w.LastTimeMsc, w.LastSequence
		if len(w.Info) > 0 {
			info := &mdv1.SymbolInfo{}
			if err := proto.Unmarshal(w.Info, info); err != nil {
				return fmt.Errorf("saved symbol info of %s: %w", name, err)
			}
			s.info = info
		}
	}
	return nil
}

// Infos returns the announced symbols' metadata.
func (v *Validator) Infos() []*mdv1.SymbolInfo {
	var out []*mdv1.SymbolInfo
	for _, s := range v.symbols {
		if s.info != nil {
			out = append(out, s.info)
		}
	}
	return out
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Check validates a batch. Ticks are judged in order, so a batch is the same as its ticks sent one by one.
func (v *Validator) Check(b *mdv1.TickBatch) Result {
	var res Result
	n := len(b.GetTimeMsc())
	if reason := malformed(b); reason != "" {
		total := max(n, len(b.GetBid()), len(b.GetAsk()), 1)
		res.Rejects[mdv1.TickRejectReason_TICK_REJECT_REASON_MALFORMED_BATCH] = uint64(total)
		res.RejectedTotal = uint64(total)
		for i := range min(total, maxListed) {
			res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: mdv1.TickRejectReason_TICK_REJECT_REASON_MALFORMED_BATCH, Detail: reason})
		}
		return res
	}
	if n == 0 {
		return res
	}
	s := v.symbols[b.GetSymbol()]
	if s == nil || s.info == nil {
		if !v.cfg.AllowUnknownSymbols {
			res.Rejects[mdv1.TickRejectReason_TICK_REJECT_REASON_UNKNOWN_SYMBOL] = uint64(n)
			res.RejectedTotal = uint64(n)
			detail := fmt.Sprintf("symbol %q was not announced with SymbolInfo", b.GetSymbol())
			for i := range min(n, maxListed) {
				res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: mdv1.TickRejectReason_TICK_REJECT_REASON_UNKNOWN_SYMBOL, Detail: detail})
			}
			return res
		}
		if s == nil {
			s = &symbolState{}
			v.symbols[b.GetSymbol()] = s
		}
	}
	futureLimit := v.now().Add(v.cfg.FutureTolerance).UnixMilli()
	backTol := v.cfg.BackwardsTolerance.Milliseconds()
	if !v.slowOnly && v.allValid(b, s, futureLimit, backTol, &res) {
		res.Accepted = b
		return res
	}
	var keep []int // indices kept, only allocated once a tick is rejected
	for i := range n {
		reason, detail := v.checkTick(b, i, s, futureLimit, backTol)
		if reason != mdv1.TickRejectReason_TICK_REJECT_REASON_UNSPECIFIED {
			if keep == nil {
				keep = make([]int, 0, n)
				for j := range i {
					keep = append(keep, j)
				}
			}
			res.Rejects[reason]++
			res.RejectedTotal++
			if len(res.Rejected) < maxListed {
				res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: reason, Detail: detail})
			}
			continue
		}
		if keep != nil {
			keep = append(keep, i)
		}
		t := b.TimeMsc[i]
		if t > s.lastTime {
			s.lastTime = t
		}
		if seqs := b.GetSequence(); len(seqs) > 0 && seqs[i] != 0 {
			if s.lastSeq != 0 && seqs[i] > s.lastSeq+1 {
				res.SequenceGaps += seqs[i] - s.lastSeq - 1
			}
			s.lastSeq = seqs[i]
		}
	}
	switch {
	case keep == nil:
		res.Accepted = b
	case len(keep) > 0:
		res.Accepted = subset(b, keep)
	}
	return res
}

// allValid is the common case in one tight loop: a quote-only batch (no last or volume column)
// whose every tick passes. If so it updates the watermarks and returns true; at the first doubt it
// returns false having changed nothing, and Check judges the batch tick by tick.
func (v *Validator) allValid(b *mdv1.TickBatch, s *symbolState, futureLimit, backTol int64, res *Result) bool {
	if len(b.Last) > 0 || len(b.Volume) > 0 {
		return false
	}
	lastTime, lastSeq := s.lastTime, s.lastSeq
	var gaps uint64
	seqs := b.Sequence
	for i, t := range b.TimeMsc {
		bid, ask := b.Bid[i], b.Ask[i]
		// x-x == 0 is false for NaN and ±Inf.
		if !(bid > 0 && ask > 0 && bid-bid == 0 && ask-ask == 0) || (bid > ask && !v.cfg.AllowCrossed) ||
			t > futureLimit || (lastTime != 0 && t < lastTime-backTol) {
			return false
		}
		if t > lastTime {
			lastTime = t
		}
		if len(seqs) > 0 && seqs[i] != 0 {
			if seqs[i] <= lastSeq {
				return false
			}
			if lastSeq != 0 && seqs[i] > lastSeq+1 {
				gaps += seqs[i] - lastSeq - 1
			}
			lastSeq = seqs[i]
		}
	}
	s.lastTime, s.lastSeq = lastTime, lastSeq
	res.SequenceGaps = gaps
	return true
}

func (v *Validator) checkTick(b *mdv1.TickBatch, i int, s *symbolState, futureLimit, backTol int64) (Reason, string) {
	bid, ask := b.Bid[i], b.Ask[i]
	var last, vol float64
	if len(b.Last) > 0 {
		last = b.Last[i]
	}
	if len(b.Volume) > 0 {
		vol = b.Volume[i]
	}
	if !finite(bid) || !finite(ask) || !finite(last) || !finite(vol) {
		return mdv1.TickRejectReason_TICK_REJECT_REASON_NON_FINITE_PRICE,
			fmt.Sprintf("non-finite value (bid %v, ask %v, last %v, volume %v)", bid, ask, last, vol)
	}
	var flags uint32
	if len(b.Flags) > 0 {
		flags = b.Flags[i]
	}
	// Without flags (files, other feeds) a tick is a full quote: both prices must be there.
	hasBid, hasAsk := flags == 0 || flags&FlagBid != 0, flags == 0 || flags&FlagAsk != 0
	switch {
	case hasBid && bid <= 0:
		return mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE, fmt.Sprintf("bid %v is not positive", bid)
	case hasAsk && ask <= 0:
		return mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE, fmt.Sprintf("ask %v is not positive", ask)
	case flags&FlagLast != 0 && last <= 0:
		return mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE, fmt.Sprintf("last %v is not positive", last)
	case bid < 0 || ask < 0 || last < 0 || vol < 0:
		return mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE, "negative price or volume"
	}
	if !v.cfg.AllowCrossed && bid > 0 && ask > 0 && bid > ask {
		return mdv1.TickRejectReason_TICK_REJECT_REASON_CROSSED_QUOTE, fmt.Sprintf("bid %v > ask %v", bid, ask)
	}
	t := b.TimeMsc[i]
	if t > futureLimit {
		return mdv1.TickRejectReason_TICK_REJECT_REASON_FUTURE_TIMESTAMP,
			fmt.Sprintf("time %d ms is %d ms ahead of the tolerated limit", t, t-futureLimit)
	}
	if s.lastTime != 0 && t < s.lastTime-backTol {
		return mdv1.TickRejectReason_TICK_REJECT_REASON_TIME_WENT_BACKWARDS,
			fmt.Sprintf("time %d ms is %d ms before the symbol's latest %d ms", t, s.lastTime-t, s.lastTime)
	}
	if seqs := b.Sequence; len(seqs) > 0 && seqs[i] != 0 && seqs[i] <= s.lastSeq {
		return mdv1.TickRejectReason_TICK_REJECT_REASON_DUPLICATE_SEQUENCE,
			fmt.Sprintf("sequence %d already received (latest %d)", seqs[i], s.lastSeq)
	}
	return mdv1.TickRejectReason_TICK_REJECT_REASON_UNSPECIFIED, ""
}

// malformed says what is structurally wrong with a batch, or "" if nothing is. time, bid and ask
// must have one entry per tick; last, volume, flags and sequence either one per tick or none.
func malformed(b *mdv1.TickBatch) string {
	n := len(b.GetTimeMsc())
	if b.GetSymbol() == "" {
		return "batch has no symbol"
	}
	if len(b.GetBid()) != n || len(b.GetAsk()) != n {
		return fmt.Sprintf("column lengths differ: time_msc %d, bid %d, ask %d", n, len(b.GetBid()), len(b.GetAsk()))
	}
	for _, c := range []struct {
		name string
		l    int
	}{{"last", len(b.GetLast())}, {"volume", len(b.GetVolume())}, {"flags", len(b.GetFlags())}, {"sequence", len(b.GetSequence())}} {
		if c.l != 0 && c.l != n {
			return fmt.Sprintf("column %s has %d entries for %d ticks", c.name, c.l, n)
		}
	}
	if seqs := b.GetSequence(); len(seqs) > 1 {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != 0 && seqs[i] <= seqs[i-1] {
				return fmt.Sprintf("sequence not strictly increasing at index %d", i)
			}
		}
	}
	return ""
}

func subset(b *mdv1.TickBatch, keep []int) *mdv1.TickBatch {
	out := &mdv1.TickBatch{Symbol: b.Symbol}
	out.TimeMsc = make([]int64, len(keep))
	out.Bid = make([]float64, len(keep))
	out.Ask = make([]float64, len(keep))
	if len(b.Last) > 0 {
		out.Last = make([]float64, len(keep))
	}
	if len(b.Volume) > 0 {
		out.Volume = make([]float64, len(keep))
	}
	if len(b.Flags) > 0 {
		out.Flags = make([]uint32, len(keep))
	}
	if len(b.Sequence) > 0 {
		out.Sequence = make([]uint64, len(keep))
	}
	for j, i := range keep {
		out.TimeMsc[j], out.Bid[j], out.Ask[j] = b.TimeMsc[i], b.Bid[i], b.Ask[i]
		if out.Last != nil {
			out.Last[j] = b.Last[i]
		}
		if out.Volume != nil {
			out.Volume[j] = b.Volume[i]
		}
		if out.Flags != nil {
			out.Flags[j] = b.Flags[i]
		}
		if out.Sequence != nil {
			out.Sequence[j] = b.Sequence[i]
		}
	}
	return out
}

// ReasonName is the short label of a reason ("crossed_quote"), for metrics and logs.
func ReasonName(r Reason) string {
	if name, ok := reasonNames[r]; ok {
		return name
	}
	return "unspecified"
}

var reasonNames = func() map[Reason]string {
	m := map[Reason]string{}
	for v, full := range mdv1.TickRejectReason_name {
		if v == 0 {
			continue
		}
		short := full[len("TICK_REJECT_REASON_"):]
		b := []byte(short)
		for i, c := range b {
			if c >= 'A' && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
		m[Reason(v)] = string(b)
	}
	return m
}()
