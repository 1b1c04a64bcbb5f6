package journal_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kairos-mt5/kairos/go/execution/journal"
)

// stallStore is a Memory whose appends block, while stalled, until their context ends or the test
// releases them: a disk or a database that stopped answering. entered says a stalled write began.
type stallStore struct {
	*journal.Memory
	stalled atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newStallStore() *stallStore {
	return &stallStore{Memory: journal.NewMemory(), entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (s *stallStore) Append(ctx context.Context, entries []journal.Entry) error {
	if s.stalled.Load() {
		s.entered <- struct{}{}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.release:
		}
	}
	return s.Memory.Append(ctx, entries)
}

func entry(key string) journal.Entry {
	return journal.Entry{Kind: journal.KindReport, Key: key, Payload: []byte(key)}
}

func TestJournal_AStalledStore_FailsTheJournalAfterTheFlushTimeout(t *testing.T) {
	st := newStallStore()
	j, err := journal.New(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetFlushTimeout(50 * time.Millisecond)
	st.stalled.Store(true)

	tk, _, err := j.Append(1, entry("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = tk.Wait(ctx)

	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("wait: %v (caller ctx %v), want the store's deadline well before the caller's", err, ctx.Err())
	}
	if j.Err() == nil {
		t.Fatal("the journal is not failed after a stalled write")
	}
	if _, _, err := j.Append(2, entry("b")); err == nil {
		t.Fatal("an append after the failure was accepted")
	}
}

func TestJournal_ABatchQueuedBehindAFailedOne_IsNeverWritten(t *testing.T) {
	st := newStallStore()
	j, err := journal.New(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetFlushTimeout(200 * time.Millisecond)
	st.stalled.Store(true)
	first, _, err := j.Append(1, entry("a"))
	if err != nil {
		t.Fatal(err)
	}
	<-st.entered // the writer is writing the first batch: the next append queues behind it
	second, _, err := j.Append(2, entry("b"))
	if err != nil {
		t.Fatalf("append while stalled: %v", err)
	}

	errFirst := first.Wait(context.Background())
	st.stalled.Store(false) // the store recovers: the queued batch must still not be written
	errSecond := second.Wait(context.Background())

	if errFirst == nil || errSecond == nil {
		t.Fatalf("first %v, second %v: want both failed", errFirst, errSecond)
	}
	if last, _ := st.LastSeq(context.Background()); last != 0 {
		t.Fatalf("the store holds entries up to %d after a failed write, want none", last)
	}
}

func TestTicketWait_ReturnsTheCallersContextErrorWhenItEndsFirst(t *testing.T) {
	st := newStallStore()
	j, err := journal.New(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.SetFlushTimeout(time.Minute)
	st.stalled.Store(true)
	tk, _, err := j.Append(1, entry("a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	if err := tk.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait: %v, want context.Canceled", err)
	}
	close(st.release)
	if err := tk.Wait(context.Background()); err != nil {
		t.Fatalf("the write the caller stopped waiting for: %v, want it durable all the same", err)
	}
}
