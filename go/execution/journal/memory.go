package journal

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Memory is a Store that keeps its entries in memory: for tests, and for embedding the engine where
// nothing has to survive the process. It is not durable. Close keeps the entries, so a new Journal
// over the same Memory replays them as a restarted service replays its file. It refuses a sequence
// number not above the last one it holds (the SQL stores' primary key refuses one already held).
// Safe for concurrent use.
type Memory struct {
	mu      sync.Mutex
	entries []Entry // in sequence order; only ever appended to
}

// NewMemory returns an empty in-memory store; journal.New(ctx, NewMemory()) is a journal over it.
func NewMemory() *Memory { return &Memory{} }

// Name implements Store.
func (m *Memory) Name() string { return "memory" }

// Append implements Store: all entries or none. Sequences must rise above the last one held.
func (m *Memory) Append(ctx context.Context, entries []Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	last := uint64(0)
	if n := len(m.entries); n > 0 {
		last = m.entries[n-1].Seq
	}
	for _, e := range entries {
		if e.Seq <= last {
			return fmt.Errorf("journal: memory: sequence %d is not above %d", e.Seq, last)
		}
		last = e.Seq
	}
	for _, e := range entries {
		e.Payload = append([]byte(nil), e.Payload...) // the caller may reuse its buffer
		m.entries = append(m.entries, e)
	}
	return nil
}

// Read implements Store. fn runs without the store's lock, on the entries held when Read began.
func (m *Memory) Read(ctx context.Context, after uint64, limit int, fn func(Entry) error) error {
	m.mu.Lock()
	held := m.entries[:len(m.entries):len(m.entries)] // appends never touch what is already held
	m.mu.Unlock()
	i := sort.Search(len(held), func(i int) bool { return held[i].Seq > after })
	for n := 0; i < len(held) && (limit <= 0 || n < limit); i, n = i+1, n+1 {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := held[i]
		e.Payload = append([]byte(nil), e.Payload...)
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// ReadKey implements Store, by a scan: the memory store serves tests and short-lived embeddings.
func (m *Memory) ReadKey(ctx context.Context, key string, fn func(Entry) error) error {
	m.mu.Lock()
	held := m.entries[:len(m.entries):len(m.entries)]
	m.mu.Unlock()
	for _, e := range held {
		if e.Key != key {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e.Payload = append([]byte(nil), e.Payload...)
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// LastSeq implements Store.
func (m *Memory) LastSeq(context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.entries); n > 0 {
		return m.entries[n-1].Seq, nil
	}
	return 0, nil
}

// Close implements Store; the entries stay for the next Journal over this Memory.
func (m *Memory) Close() error { return nil }
