//go:build linux

package journal_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/execution/journal"
)

// BenchmarkDurableAppendLatency measures what a submission waits for the journal: an order's five
// entries (command, risk, report, fill report, account; ~300 bytes each) appended, then waited on
// until durable, paced open loop at 1,000 orders/s as the execution benchmark's SubmitOrder run
// (an order leaves on time whatever happened to the earlier ones, so a slow flush delays the orders
// queued behind it). Reported: the wait's p50/p99/max in µs and, measured on the same disk just
// after, the p99 of a 20 KiB overwrite + fdatasync (the disk's floor for one durable commit).
//
//	go test -run '^$' -bench DurableAppendLatency -benchtime 1x ./go/execution/journal
func BenchmarkDurableAppendLatency(b *testing.B) {
	ctx := context.Background()
	orders := 3000
	if s := os.Getenv("KAIROS_BENCH_ORDERS"); s != "" {
		_, _ = fmt.Sscan(s, &orders)
	}
	for _, c := range []struct {
		name string
		open func(b *testing.B) (*journal.Journal, error)
	}{
		{"sqlite-full", func(b *testing.B) (*journal.Journal, error) {
			return journal.OpenSync(ctx, filepath.Join(b.TempDir(), "j.db"), journal.SyncFull)
		}},
		{"sqlite-normal", func(b *testing.B) (*journal.Journal, error) {
			return journal.OpenSync(ctx, filepath.Join(b.TempDir(), "j.db"), journal.SyncNormal)
		}},
		{"postgres", func(b *testing.B) (*journal.Journal, error) { return journal.Open(ctx, testutil.Postgres(b)) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			j, err := c.open(b)
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			var lat []float64
			before := j.Stats()
			for b.Loop() {
				lat = pacedAppends(b, j, orders, time.Millisecond)
			}
			if fl := j.Stats().Flushes - before.Flushes; fl > 0 {
				b.ReportMetric(float64(orders)/float64(fl), "orders/flush")
			}
			b.ReportMetric(lat[len(lat)/2], "p50-us")
			b.ReportMetric(lat[len(lat)*99/100], "p99-us")
			b.ReportMetric(lat[len(lat)-1], "max-us")
			b.ReportMetric(fdatasyncP99(b), "fdatasync-p99-us")
			b.ReportMetric(loadavg(), "loadavg")
		})
	}
}

func pacedAppends(b *testing.B, j *journal.Journal, n int, every time.Duration) []float64 {
	payload := make([]byte, 300)
	lat := make([]float64, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t0 := time.Now()
			key := fmt.Sprintf("o%d", i)
			es := make([]journal.Entry, 5)
			for k := range es {
				es[k] = journal.Entry{Kind: journal.KindReport, Key: key, Payload: payload}
			}
			t, _, err := j.Append(t0.UnixMicro(), es...)
			if err == nil {
				err = t.Wait(context.Background())
			}
			if err != nil {
				b.Error(err)
			}
			lat[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
		}(i)
	}
	wg.Wait()
	sort.Float64s(lat)
	return lat
}

// fdatasyncP99 is the disk's cost of one small durable overwrite, in µs.
func fdatasyncP99(b *testing.B) float64 {
	f, err := os.Create(filepath.Join(b.TempDir(), "probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 20<<10)
	_, _ = f.Write(make([]byte, 4*len(buf)))
	_ = f.Sync()
	lat := make([]float64, 300)
	for i := range lat {
		_, _ = f.WriteAt(buf, int64(i%4*len(buf)))
		t0 := time.Now()
		_ = syscall.Fdatasync(int(f.Fd()))
		lat[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
	}
	sort.Float64s(lat)
	return lat[len(lat)*99/100]
}

func loadavg() float64 {
	var l float64
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		_, _ = fmt.Sscanf(string(b), "%f", &l)
	}
	return l
}
