// Package ticksdata loads the real EURUSD ticks of shared/data for tests and benchmarks.
package ticksdata

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// File is the tick file's name in shared/data.
const File = "eurusd-ticks-2020-01-01.csv"

// Tick is one row.
type Tick struct {
	TimeMsc  int64
	Bid, Ask float64
}

// Path finds shared/data/<name> beside the repository (worktrees sit next to /work/shared).
func Path(name string) (string, error) {
	if d := os.Getenv("KAIROS_DATA_DIR"); d != "" {
		return filepath.Join(d, name), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		for _, c := range []string{filepath.Join(dir, "shared", "data", name), filepath.Join(dir, "..", "shared", "data", name)} {
			if _, err := os.Stat(c); err == nil {
				return filepath.Clean(c), nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found in any shared/data above the working directory (set KAIROS_DATA_DIR)", name)
		}
		dir = parent
	}
}

// Load reads every tick of the EURUSD file: "YYYYMMDD HHMMSSmmm,bid,ask,0", UTC.
func Load() ([]Tick, error) {
	p, err := Path(File)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Tick
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		parts := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if len(parts) < 3 {
			return nil, fmt.Errorf("%s:%d: want 4 fields", p, line)
		}
		ts, err := time.Parse("20060102 150405", parts[0][:15])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", p, line, err)
		}
		ms, err := strconv.Atoi(parts[0][15:])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", p, line, err)
		}
		bid, err1 := strconv.ParseFloat(parts[1], 64)
		ask, err2 := strconv.ParseFloat(parts[2], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s:%d: bad price", p, line)
		}
		out = append(out, Tick{TimeMsc: ts.UnixMilli() + int64(ms), Bid: bid, Ask: ask})
	}
	return out, sc.Err()
}

// Batches cuts ticks into TickBatches of size n with sequences from firstSeq and flags 6 (bid+ask).
func Batches(symbol string, ticks []Tick, n int, firstSeq uint64) []*mdv1.TickBatch {
	var out []*mdv1.TickBatch
	seq := firstSeq
	for i := 0; i < len(ticks); i += n {
		end := min(i+n, len(ticks))
		b := &mdv1.TickBatch{Symbol: symbol}
		for _, t := range ticks[i:end] {
			b.TimeMsc = append(b.TimeMsc, t.TimeMsc)
			b.Bid = append(b.Bid, t.Bid)
			b.Ask = append(b.Ask, t.Ask)
			b.Flags = append(b.Flags, 6)
			b.Sequence = append(b.Sequence, seq)
			seq++
		}
		out = append(out, b)
	}
	return out
}

// EURUSD is the symbol metadata of the file's instrument.
func EURUSD() *mdv1.SymbolInfo {
	return &mdv1.SymbolInfo{Symbol: "EURUSD", Digits: 5, Point: 1e-5, ContractSize: 100000, VolumeMin: 0.01, VolumeMax: 500,
		VolumeStep: 0.01, TickSize: 1e-5, TickValue: 1, CurrencyBase: "EUR", CurrencyProfit: "USD"}
}
