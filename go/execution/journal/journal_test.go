package journal_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/execution/journal"
)

// backends opens each store: a SQLite file, a PostgreSQL server started for the test, and the
// in-memory store. Each returns how to open (and, after Close, reopen) a journal over the same data.
func backends(t *testing.T) map[string]func(t *testing.T) func() (*journal.Journal, error) {
	ctx := context.Background()
	return map[string]func(t *testing.T) func() (*journal.Journal, error){
		"sqlite": func(t *testing.T) func() (*journal.Journal, error) {
			dsn := filepath.Join(t.TempDir(), "journal.db")
			return func() (*journal.Journal, error) { return journal.Open(ctx, dsn) }
		},
		"postgres": func(t *testing.T) func() (*journal.Journal, error) {
			dsn := testutil.Postgres(t)
			return func() (*journal.Journal, error) { return journal.Open(ctx, dsn) }
		},
		"memory": func(t *testing.T) func() (*journal.Journal, error) {
			mem := journal.NewMemory()
			return func() (*journal.Journal, error) { return journal.New(ctx, mem) }
		},
	}
}

func readAll(t *testing.T, j *journal.Journal, after uint64) []journal.Entry {
	t.Helper()
	var out []journal.Entry
	if err := j.Read(context.Background(), after, 0, func(e journal.Entry) error { out = append(out, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestJournalBackends(t *testing.T) {
	for name, openerFor := range backends(t) {
		t.Run(name, func(t *testing.T) {
			open := openerFor(t)
			j, err := open()
			if err != nil {
				t.Fatal(err)
			}
			if j.Backend() != name {
				t.Fatalf("backend %s, want %s", j.Backend(), name)
			}

			t.Run("AppendAssignsIncreasingSequencesAndIsDurableOnWait", func(t *testing.T) {
				tk, seqs, err := j.Append(1, journal.Entry{Kind: journal.KindCommand, Key: "a", Payload: []byte{1}},
					journal.Entry{Kind: journal.KindReport, Key: "a", Payload: []byte{2, 3}})
				if err != nil || tk.Wait(context.Background()) != nil {
					t.Fatal(err)
				}
				if len(seqs) != 2 || seqs[1] != seqs[0]+1 {
					t.Fatalf("seqs %v", seqs)
				}
				got := readAll(t, j, 0)
				if len(got) != 2 || got[1].Kind != journal.KindReport || string(got[1].Payload) != "\x02\x03" || got[0].Key != "a" || got[0].TimeUS != 1 {
					t.Fatalf("read back %+v", got)
				}
			})

			t.Run("ConcurrentAppendsShareGroupCommits", func(t *testing.T) {
				before := j.Stats()
				const writers, each = 16, 50
				var wg sync.WaitGroup
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						for i := 0; i < each; i++ {
							tk, _, err := j.Append(2, journal.Entry{Kind: journal.KindReport, Key: fmt.Sprintf("w%d-%d", w, i), Payload: []byte("x")})
							if err == nil {
								err = tk.Wait(context.Background())
							}
							if err != nil {
								t.Error(err)
								return
							}
						}
					}(w)
				}
				wg.Wait()
				after := j.Stats()
				n := after.Entries - before.Entries
				if n != writers*each {
					t.Fatalf("wrote %d entries, want %d", n, writers*each)
				}
				// The in-memory store writes in nanoseconds, so appends rarely queue behind a flush:
				// grouping is only asserted where a write takes the time it amortises.
				if flushes := after.Flushes - before.Flushes; name != "memory" && flushes >= n {
					t.Fatalf("%d flushes for %d entries: no group commit", flushes, n)
				}
				got := readAll(t, j, 0)
				for i := 1; i < len(got); i++ {
					if got[i].Seq != got[i-1].Seq+1 {
						t.Fatalf("gap or reorder at %d: %d after %d", i, got[i].Seq, got[i-1].Seq)
					}
				}
			})

			t.Run("ReadStartsAfterTheSequenceAndStopsAtTheLimit", func(t *testing.T) {
				all := readAll(t, j, 0)
				if len(all) < 5 {
					t.Fatalf("only %d entries to read", len(all))
				}
				var got []uint64
				err := j.Read(context.Background(), all[1].Seq, 3, func(e journal.Entry) error { got = append(got, e.Seq); return nil })
				if err != nil {
					t.Fatal(err)
				}
				if want := []uint64{all[2].Seq, all[3].Seq, all[4].Seq}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("read after %d limit 3: %v, want %v", all[1].Seq, got, want)
				}
				stop := errors.New("stop")
				n := 0
				err = j.Read(context.Background(), 0, 0, func(journal.Entry) error { n++; return stop })
				if !errors.Is(err, stop) || n != 1 {
					t.Fatalf("an error from fn: read %d entries and returned %v, want 1 and the error", n, err)
				}
			})

			t.Run("ReadKeyReturnsTheEntriesOfOneKeyInOrder", func(t *testing.T) {
				var want []uint64
				for i, key := range []string{"order-7", "order-8", "order-7", "order-9", "order-7"} {
					tk, seqs, err := j.Append(int64(10+i), journal.Entry{Kind: journal.KindReport, Key: key, Payload: []byte{byte(i)}})
					if err != nil || tk.Wait(context.Background()) != nil {
						t.Fatal(err)
					}
					if key == "order-7" {
						want = append(want, seqs[0])
					}
				}
				var got []uint64
				var payloads []byte
				err := j.ReadKey(context.Background(), "order-7", func(e journal.Entry) error {
					if e.Key != "order-7" {
						t.Errorf("entry %d has key %q", e.Seq, e.Key)
					}
					got, payloads = append(got, e.Seq), append(payloads, e.Payload...)
					return nil
				})
				if err != nil || fmt.Sprint(got) != fmt.Sprint(want) || string(payloads) != "\x00\x02\x04" {
					t.Fatalf("ReadKey: %v (payloads %v), err %v; want %v", got, payloads, err, want)
				}
				n := 0
				if err := j.ReadKey(context.Background(), "order-never", func(journal.Entry) error { n++; return nil }); err != nil || n != 0 {
					t.Fatalf("an absent key: %d entries, err %v", n, err)
				}
				stop := errors.New("stop")
				if err := j.ReadKey(context.Background(), "order-7", func(journal.Entry) error { return stop }); !errors.Is(err, stop) {
					t.Fatalf("an error from fn: %v", err)
				}
			})

			t.Run("SubscribersSeeDurableReportsOnly", func(t *testing.T) {
				ch, cancel := j.Subscribe(16)
				defer cancel()
				tk, seqs, _ := j.Append(3, journal.Entry{Kind: journal.KindCommand, Payload: []byte("c")}, journal.Entry{Kind: journal.KindReport, Payload: []byte("r")})
				if err := tk.Wait(context.Background()); err != nil {
					t.Fatal(err)
				}
				e := <-ch
				if e.Seq != seqs[1] || e.Kind != journal.KindReport {
					t.Fatalf("subscriber got %+v", e)
				}
			})

			last := j.LastSeq()
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			if _, _, err := j.Append(4, journal.Entry{Kind: journal.KindReport}); err == nil {
				t.Fatal("append after close succeeded")
			}

			t.Run("ReopenContinuesTheSequence", func(t *testing.T) {
				j2, err := open()
				if err != nil {
					t.Fatal(err)
				}
				defer j2.Close()
				if j2.LastSeq() != last {
					t.Fatalf("reopened last seq %d, want %d", j2.LastSeq(), last)
				}
				tk, seqs, err := j2.Append(5, journal.Entry{Kind: journal.KindReport, Payload: []byte("after")})
				if err != nil || tk.Wait(context.Background()) != nil || seqs[0] != last+1 {
					t.Fatalf("append after reopen: seq %v err %v", seqs, err)
				}
				if got := readAll(t, j2, last); len(got) != 1 || string(got[0].Payload) != "after" {
					t.Fatalf("read after %d: %+v", last, got)
				}
			})
		})
	}
}

func TestSQLiteIsInWALMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	st, err := journal.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Append(context.Background(), []journal.Entry{{Seq: 1, Kind: journal.KindReport, Payload: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("no write-ahead log beside the journal: %v", err)
	}
}

// ReadKey must not scan the journal: the engine reads orders it no longer holds by their key.
func TestSQLiteReadsAKeyThroughItsIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	st, err := journal.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var plan strings.Builder
	rows, err := db.Query("EXPLAIN QUERY PLAN SELECT seq, time_us, kind, key, payload FROM journal WHERE key = ? ORDER BY seq", "k")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "; ")
	}
	if !strings.Contains(plan.String(), "USING INDEX journal_key") {
		t.Fatalf("query plan %q does not use the key's index", plan.String())
	}
}

func TestDuplicateSequenceIsRefusedByTheStore(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) journal.Store{
		"sqlite": func(t *testing.T) journal.Store {
			st, err := journal.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "j.db"))
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"memory": func(*testing.T) journal.Store { return journal.NewMemory() },
	} {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			defer st.Close()
			e := []journal.Entry{{Seq: 7, Kind: journal.KindReport, Payload: []byte{1}}}
			if err := st.Append(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			if err := st.Append(context.Background(), e); err == nil {
				t.Fatal("a second entry with the same sequence was accepted")
			}
		})
	}
}

func TestMemoryKeepsItsEntriesAcrossCloseAndCopiesPayloads(t *testing.T) {
	ctx := context.Background()
	mem := journal.NewMemory()
	buf := []byte("first")
	if err := mem.Append(ctx, []journal.Entry{{Seq: 1, Kind: journal.KindReport, Payload: buf}}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // the caller reuses its buffer
	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
	if err := mem.Append(ctx, []journal.Entry{{Seq: 3, Payload: []byte("a")}, {Seq: 2, Payload: []byte("b")}}); err == nil {
		t.Fatal("a batch with a falling sequence was accepted")
	}
	var got []string
	if err := mem.Read(ctx, 0, 0, func(e journal.Entry) error { got = append(got, string(e.Payload)); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[first]" {
		t.Fatalf("read back %q, want [first] (payload copied, refused batch left no entry)", got)
	}
	if last, _ := mem.LastSeq(ctx); last != 1 {
		t.Fatalf("last seq %d, want 1", last)
	}
}
