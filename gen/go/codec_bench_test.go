package gen_test

import (
	"os"
	"testing"

	"google.golang.org/protobuf/proto"

	marketdatav1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// Codec benchmarks for the hot-path choice between one TickBatch and many Tick messages. `make bench`
// (bench/contracts.py) writes the inputs from real EURUSD ticks and points KAIROS_BENCH_TICKBATCH at
// them; the figures land in bench/results/contracts.json.

func benchInput(b *testing.B) (*marketdatav1.TickBatch, []*marketdatav1.Tick) {
	b.Helper()
	path := os.Getenv("KAIROS_BENCH_TICKBATCH")
	if path == "" {
		b.Skip("KAIROS_BENCH_TICKBATCH not set: run `make bench`")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	batch := &marketdatav1.TickBatch{}
	if err := proto.Unmarshal(raw, batch); err != nil {
		b.Fatal(err)
	}
	rows := make([]*marketdatav1.Tick, len(batch.GetTimeMsc()))
	for i := range rows {
		rows[i] = &marketdatav1.Tick{Symbol: batch.GetSymbol(), TimeMsc: batch.GetTimeMsc()[i], Bid: batch.GetBid()[i],
			Ask: batch.GetAsk()[i], Flags: batch.GetFlags()[i], Sequence: batch.GetSequence()[i]}
	}
	return batch, rows
}

func reportPerTick(b *testing.B, ticks int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ticks), "ns/tick")
}

func BenchmarkTickBatchMarshal(b *testing.B) {
	batch, _ := benchInput(b)
	for b.Loop() {
		if _, err := proto.Marshal(batch); err != nil {
			b.Fatal(err)
		}
	}
	reportPerTick(b, len(batch.GetTimeMsc()))
}

func BenchmarkTickBatchUnmarshal(b *testing.B) {
	batch, _ := benchInput(b)
	raw, _ := proto.Marshal(batch)
	for b.Loop() {
		if err := proto.Unmarshal(raw, &marketdatav1.TickBatch{}); err != nil {
			b.Fatal(err)
		}
	}
	reportPerTick(b, len(batch.GetTimeMsc()))
}

func BenchmarkTickRowsMarshal(b *testing.B) {
	_, rows := benchInput(b)
	for b.Loop() {
		for _, t := range rows {
			if _, err := proto.Marshal(t); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerTick(b, len(rows))
}

func BenchmarkTickRowsUnmarshal(b *testing.B) {
	_, rows := benchInput(b)
	raws := make([][]byte, len(rows))
	for i, t := range rows {
		raws[i], _ = proto.Marshal(t)
	}
	for b.Loop() {
		for _, raw := range raws {
			if err := proto.Unmarshal(raw, &marketdatav1.Tick{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPerTick(b, len(rows))
}
