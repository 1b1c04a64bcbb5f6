package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
)

// MaxHistoryParts bounds the parts one history request may hold unread: a consumer that falls this
// far behind loses the request (the bridge connection is never slowed by a history reader).
const MaxHistoryParts = 4096

// Errors of History.Fetch and its parts.
var (
	ErrNoTerminal     = errors.New("no MT5 terminal is connected to the collector")
	ErrConnectionLost = errors.New("the terminal's bridge connection ended before the chunk was complete")
	ErrTooSlow        = errors.New("the history reader fell behind the terminal")
)

// History sends history requests to a connected terminal on its market-data channel and hands the
// HistoryData parts that come back to the caller that asked. It holds no history itself.
type History struct {
	mu       sync.Mutex
	sessions []*session // live connections, oldest first
	waiters  map[uint64]*HistoryFetch
	next     uint64
}

// NewHistory returns an empty router; Config.History wires it to the listener.
func NewHistory() *History { return &History{waiters: map[uint64]*HistoryFetch{}} }

// HistoryFetch is one request in flight: its parts arrive on Parts in order; Err says why it ended
// early (connection lost, reader too slow) once Done is closed.
type HistoryFetch struct {
	Parts    chan *bridgev1.HistoryData
	Terminal string
	id       uint64
	s        *session
	done     chan struct{}
	err      error
	h        *History
}

// Done is closed when the fetch ended without its last part (see Err).
func (f *HistoryFetch) Done() <-chan struct{} { return f.done }

// Err is why the fetch ended early.
func (f *HistoryFetch) Err() error {
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	return f.err
}

// Close forgets the request; parts arriving later are dropped.
func (f *HistoryFetch) Close() {
	f.h.mu.Lock()
	delete(f.h.waiters, f.id)
	f.h.mu.Unlock()
}

// Fetch asks a terminal for req (its request_id is assigned here): the most recently connected
// one that announced the symbol, else the most recent one.
func (h *History) Fetch(ctx context.Context, req *bridgev1.HistoryRequest) (*HistoryFetch, error) {
	h.mu.Lock()
	var s *session
	for i := len(h.sessions) - 1; i >= 0 && s == nil; i-- {
		if h.sessions[i].announced(req.GetSymbol()) {
			s = h.sessions[i]
		}
	}
	if s == nil && len(h.sessions) > 0 {
		s = h.sessions[len(h.sessions)-1]
	}
	if s == nil {
		h.mu.Unlock()
		return nil, ErrNoTerminal
	}
	h.next++
	req.RequestId = h.next
	f := &HistoryFetch{Parts: make(chan *bridgev1.HistoryData, MaxHistoryParts), id: h.next, s: s, done: make(chan struct{}), h: h,
		Terminal: fmt.Sprintf("%s (account %d, session %s)", s.c.Hello().GetTerminalName(), s.c.Hello().GetAccountLogin(), s.c.Key())}
	h.waiters[f.id] = f
	h.mu.Unlock()
	if err := s.c.Send(&bridgev1.Frame{Body: &bridgev1.Frame_HistoryRequest{HistoryRequest: req}}); err != nil {
		f.Close()
		if errors.Is(err, bridgelink.ErrNotConnected) {
			return nil, ErrConnectionLost
		}
		return nil, err
	}
	return f, nil
}

func (h *History) add(s *session) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.sessions = append(h.sessions, s)
	h.mu.Unlock()
}

// remove forgets a connection and ends every fetch it was answering.
func (h *History) remove(s *session) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.sessions {
		if x == s {
			h.sessions = append(h.sessions[:i], h.sessions[i+1:]...)
			break
		}
	}
	for id, f := range h.waiters {
		if f.s == s {
			f.err = ErrConnectionLost
			close(f.done)
			delete(h.waiters, id)
		}
	}
}

// deliver hands a part to its fetch; a part nobody waits for (the caller left) is dropped.
func (h *History) deliver(d *bridgev1.HistoryData) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.waiters[d.GetRequestId()]
	if !ok {
		return
	}
	select {
	case f.Parts <- d:
		if d.GetStatus() != mdv1.HistoryStatus_HISTORY_STATUS_MORE { // the last part: the fetch is complete
			delete(h.waiters, f.id)
		}
	default:
		f.err = ErrTooSlow
		close(f.done)
		delete(h.waiters, f.id)
	}
}
