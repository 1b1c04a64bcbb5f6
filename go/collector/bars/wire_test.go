package bars

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// TestAppendProto_whenAnyBar_thenBytesOfProtoMarshal: zero, negative, -0, NaN and extreme fields included.
func TestAppendProto_whenAnyBar_thenBytesOfProtoMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	floats := []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), 1.12345, -3.5, math.MaxFloat64, math.SmallestNonzeroFloat64}
	pick := func() float64 {
		if r.IntN(3) == 0 {
			return r.NormFloat64()
		}
		return floats[r.IntN(len(floats))]
	}
	ints := []int64{0, 1, -1, 127, 128, math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64, 1_577_836_800_000}
	pickInt := func() int64 { return ints[r.IntN(len(ints))] }
	symbols := []string{"", "EURUSD", "EURUSD.r", "€/$", string(make([]byte, 200))}
	var buf []byte
	for i := range 20000 {
		b := &mdv1.Bar{Symbol: symbols[r.IntN(len(symbols))], PeriodS: uint32(pickInt()), OpenTimeMsc: pickInt(),
			Open: pick(), High: pick(), Low: pick(), Close: pick(), TickVolume: uint64(pickInt()), RealVolume: pick(),
			SpreadPoints: int32(pickInt()), SpreadMean: pick()}
		want, err := proto.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		buf = AppendProto(buf[:0], b)
		if !bytes.Equal(buf, want) {
			t.Fatalf("bar %d %v:\n got %x\nwant %x", i, b, buf, want)
		}
		if n := ProtoSize(b); n != len(want) {
			t.Fatalf("bar %d %v: ProtoSize %d, encoding %d bytes", i, b, n, len(want))
		}
	}
}

func BenchmarkAppendProto(b *testing.B) {
	bar := &mdv1.Bar{Symbol: "EURUSD", PeriodS: 60, OpenTimeMsc: 1_577_898_000_000, Open: 1.1212, High: 1.1215, Low: 1.1210,
		Close: 1.1213, TickVolume: 26, SpreadPoints: 5, SpreadMean: 0.00004}
	var buf []byte
	for b.Loop() {
		buf = AppendProto(buf[:0], bar)
	}
}
