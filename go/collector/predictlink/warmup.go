package predictlink

import (
	"context"
	"log/slog"
	"sync"
	"time"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// Warm-up (ADR 0105): when a stream opens, and when a symbol first appears on it, the symbol's
// recent closed bars are fetched from the terminal and sent as warmup requests (state only, no
// prediction) before any of its live items; those wait meanwhile in a bounded per-symbol hold.

// HistorySource fetches a symbol's bars from the terminal (the bridge's History router).
type HistorySource interface {
	// Bars returns the bars of period periodS opening in [fromMsc, toMsc), oldest first; none when
	// the terminal has none. It returns when ctx ends.
	Bars(ctx context.Context, symbol string, periodS uint32, fromMsc, toMsc int64) ([]*mdv1.Bar, error)
}

const (
	// maxWarmSymbols bounds the symbols a stream tracks for warm-up (and the link remembers); more
	// go live without one.
	maxWarmSymbols = 8192
	// warmupFetches is how many history fetches run at once per stream (the terminal answers in turn).
	warmupFetches = 4
	// warmupChunk is the most bars one warm-up request carries.
	warmupChunk = 1000
	// maxHeldFactor bounds the items held over all of a stream's symbols, in units of WarmupHold.
	maxHeldFactor = 8
	// weekendSlack widens the range asked of the terminal so that `window` bars fit across a weekend
	// or holiday; the fetch keeps only the last `window`.
	weekendSlack = 4 * 24 * time.Hour
	// maxHistorySpan is the longest range one terminal request may cover (mdservice.MaxHistoryRange).
	maxHistorySpan = 31 * 24 * time.Hour
)

type warmSym struct {
	live bool
	held []item
}

type warmResult struct {
	symbol string
	bars   []*mdv1.Bar
	err    error
}

type statusResult struct {
	window  int
	periodS uint32
	err     error
}

// warmer is one stream's warm-up state; owned by the stream's send goroutine except for the fetch
// goroutines, which only send on results.
type warmer struct {
	l       *Link
	ep      *endpoint
	ctx     context.Context
	log     *slog.Logger
	status  chan statusResult
	results chan warmResult
	sem     chan struct{}
	wg      sync.WaitGroup

	known   bool // status answered
	off     bool // no warm-up on this stream (status failed, or the model needs none)
	window  int
	periodS uint32
	syms    map[string]*warmSym
	held    int  // items held over all symbols, at most maxHeldFactor x WarmupHold
	failLog bool // a failure was logged on this stream
}

// newWarmer starts a stream's warm-up: it asks the model's window and period (asynchronously; live
// items are held meanwhile). nil when warm-up is off.
func (l *Link) newWarmer(ctx context.Context, ep *endpoint, client inferv1.InferenceServiceClient, log *slog.Logger) *warmer {
	if l.cfg.History == nil || l.cfg.WarmupMaxBars <= 0 {
		return nil
	}
	w := &warmer{l: l, ep: ep, ctx: ctx, log: log, status: make(chan statusResult, 1), results: make(chan warmResult, warmupFetches),
		sem: make(chan struct{}, warmupFetches), syms: map[string]*warmSym{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		sctx, cancel := context.WithTimeout(ctx, l.cfg.WarmupTimeout)
		defer cancel()
		r := statusResult{}
		st, err := client.GetModelStatus(sctx, &inferv1.GetModelStatusRequest{})
		if err != nil {
			r.err = err
		} else {
			for _, m := range st.GetModels() {
				if m.GetRole() == "" || m.GetRole() == "serving" {
					r.window, r.periodS = int(m.GetWindow()), m.GetTimeframeS()
					break
				}
			}
		}
		w.status <- r // buffered: never blocks
	}()
	return w
}

// statusC is nil (blocks forever in a select) once the status is known.
func (w *warmer) statusC() <-chan statusResult {
	if w == nil || w.known {
		return nil
	}
	return w.status
}

func (w *warmer) resultsC() <-chan warmResult {
	if w == nil {
		return nil
	}
	return w.results
}

// hold takes an item of a symbol still warming (or about to); false: the item goes live now.
// overflow is the symbol's held items when its hold just overflowed: they go live now, in order,
// before it (the symbol goes live without a warm-up).
func (w *warmer) hold(it item) (held bool, overflow []item) {
	if w == nil || (w.known && w.off) {
		return false, nil
	}
	sym := it.symbol()
	s := w.syms[sym]
	if s == nil {
		if len(w.syms) >= maxWarmSymbols {
			w.l.m.InferenceWarmups.WithLabelValues("too_many_symbols").Inc()
			return false, nil
		}
		s = &warmSym{}
		w.syms[sym] = s
		w.l.remember(sym)
		if w.known {
			w.fetch(sym)
		}
	}
	if s.live {
		return false, nil
	}
	if len(s.held) >= w.l.cfg.WarmupHold || w.held >= maxHeldFactor*w.l.cfg.WarmupHold {
		w.l.m.InferenceWarmupHoldOverflow.Inc()
		w.l.m.InferenceWarmups.WithLabelValues("hold_overflow").Inc()
		w.logFailure("warm-up hold full: symbol goes live without warm-up", sym, nil)
		s.live = true
		out := s.held
		s.held = nil
		w.held -= len(out)
		return false, out
	}
	s.held = append(s.held, it)
	w.held++
	w.l.m.InferenceWarmupHeld.Inc()
	return true, nil
}

// onStatus starts the fetches (for the symbols seen so far and those the link knows that this
// endpoint owns), or, when the stream has no warm-up, returns every held item to go live.
func (w *warmer) onStatus(r statusResult) []item {
	w.known = true
	switch {
	case r.err != nil:
		w.off = true
		w.log.Info("inference warm-up off on this stream: GetModelStatus failed", "err", r.err)
	case r.window <= 0 || r.periodS == 0:
		w.off = true
		w.log.Info("inference warm-up off on this stream: the model states no window or timeframe", "window", r.window, "timeframe_s", r.periodS)
	}
	if w.off {
		return w.drain() // every held item goes on live
	}
	w.window, w.periodS = min(r.window, w.l.cfg.WarmupMaxBars), r.periodS
	for _, sym := range w.l.knownSymbols() {
		if len(w.syms) >= maxWarmSymbols {
			break
		}
		if _, ok := w.syms[sym]; !ok && w.l.ring.Lookup(sym, w.l.healthy) == w.epIndex() {
			w.syms[sym] = &warmSym{}
		}
	}
	for sym, s := range w.syms {
		if !s.live {
			w.fetch(sym)
		}
	}
	return nil
}

func (w *warmer) epIndex() int {
	for i, ep := range w.l.eps {
		if ep == w.ep {
			return i
		}
	}
	return -1
}

// onResult ends a symbol's warm-up: the bars to send as warm-up (none after a failure) and then
// its held items, in order. A symbol that already went live (hold overflow) ignores its result.
func (w *warmer) onResult(r warmResult) (bars []*mdv1.Bar, held []item) {
	s := w.syms[r.symbol]
	if s == nil || s.live {
		return nil, nil
	}
	switch {
	case r.err != nil:
		w.l.m.InferenceWarmups.WithLabelValues("failed").Inc()
		w.logFailure("warm-up history fetch failed: symbol goes live without warm-up", r.symbol, r.err)
	case len(r.bars) == 0:
		w.l.m.InferenceWarmups.WithLabelValues("empty").Inc()
	default:
		w.l.m.InferenceWarmups.WithLabelValues("done").Inc()
		w.l.m.InferenceWarmupBars.Add(float64(len(r.bars)))
	}
	s.live = true
	held, s.held = s.held, nil
	w.held -= len(held)
	return r.bars, held
}

// drain returns every held item (the stream ended or the link stops): they go on live.
func (w *warmer) drain() []item {
	if w == nil {
		return nil
	}
	var out []item
	for _, s := range w.syms {
		out = append(out, s.held...)
		s.held, s.live = nil, true
	}
	w.held = 0
	return out
}

// wait awaits the warmer's goroutines; the stream's context must be cancelled first.
func (w *warmer) wait() {
	if w != nil {
		w.wg.Wait()
	}
}

func (w *warmer) logFailure(msg, sym string, err error) {
	if !w.failLog {
		w.failLog = true
		w.log.Warn(msg, "symbol", sym, "err", err, "note", "further warm-up failures on this stream are counted, logged at debug")
		return
	}
	w.log.Debug(msg, "symbol", sym, "err", err)
}

// fetch asks the terminal for sym's last window closed bars, in the background.
func (w *warmer) fetch(sym string) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		select {
		case w.sem <- struct{}{}:
		case <-w.ctx.Done():
			return
		}
		defer func() { <-w.sem }()
		bars, err := w.closedBars(sym, time.Now())
		select {
		case w.results <- warmResult{symbol: sym, bars: bars, err: err}:
		case <-w.ctx.Done():
		}
	}()
}

// closedBars fetches and keeps the last window bars that closed before now: the bar still forming
// (open time >= the current period's open) is left out, its ticks build it live.
func (w *warmer) closedBars(sym string, now time.Time) ([]*mdv1.Bar, error) {
	p := int64(w.periodS) * 1000
	cutoff := now.UnixMilli() / p * p
	span := min(time.Duration(w.window)*time.Duration(w.periodS)*time.Second+weekendSlack, maxHistorySpan)
	ctx, cancel := context.WithTimeout(w.ctx, w.l.cfg.WarmupTimeout)
	defer cancel()
	got, err := w.l.cfg.History.Bars(ctx, sym, w.periodS, cutoff-span.Milliseconds(), cutoff)
	if err != nil {
		return nil, err
	}
	out := make([]*mdv1.Bar, 0, min(len(got), w.window))
	last := int64(-1 << 62)
	for _, b := range got {
		// Only this period's closed bars of the symbol, strictly in time (a terminal's answer is
		// trusted no further than that).
		if (b.GetSymbol() != "" && b.GetSymbol() != sym) || (b.GetPeriodS() != 0 && b.GetPeriodS() != w.periodS) ||
			b.GetOpenTimeMsc() >= cutoff || b.GetOpenTimeMsc() <= last {
			continue
		}
		b.Symbol, b.PeriodS = sym, w.periodS
		last = b.GetOpenTimeMsc()
		out = append(out, b)
	}
	if len(out) > w.window {
		out = out[len(out)-w.window:]
	}
	return out, nil
}

// remember records a symbol seen on any stream, so that a later stream warms it as soon as it opens.
func (l *Link) remember(sym string) {
	l.knownMu.Lock()
	defer l.knownMu.Unlock()
	if l.known == nil {
		l.known = map[string]struct{}{}
	}
	if len(l.known) < maxWarmSymbols {
		l.known[sym] = struct{}{}
	}
}

func (l *Link) knownSymbols() []string {
	l.knownMu.Lock()
	defer l.knownMu.Unlock()
	out := make([]string, 0, len(l.known))
	for s := range l.known {
		out = append(out, s)
	}
	return out
}
