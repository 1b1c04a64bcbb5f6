package bridge

import (
	"math"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// TestDecodeTicksFrame_whenAnyBatch_thenAsProtoUnmarshal: columns of every length (unequal ones too),
// values of every varint width (negative times take 10 bytes), non-minimal varints and truncated
// columns; the fast decoder either declines or agrees with proto.Unmarshal.
func TestDecodeTicksFrame_whenAnyBatch_thenAsProtoUnmarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	wide := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return uint64(r.IntN(128))
		case 1:
			return r.Uint64() >> r.IntN(64)
		default:
			return 1_577_836_800_000 + uint64(r.IntN(1<<30))
		}
	}
	took := 0
	reused := &mdv1.TickBatch{} // every frame decodes into the previous one's columns, as the pool does
	for i := range 5000 {
		n := r.IntN(130)
		length := func() int {
			if r.IntN(10) == 0 {
				return r.IntN(130)
			}
			return n
		}
		b := &mdv1.TickBatch{Symbol: []string{"EURUSD", "GBPUSD", ""}[r.IntN(3)]}
		for range length() {
			b.TimeMsc = append(b.TimeMsc, int64(wide()))
		}
		for range length() {
			b.Bid = append(b.Bid, r.NormFloat64())
		}
		for range length() {
			b.Ask = append(b.Ask, r.NormFloat64())
		}
		if r.IntN(3) == 0 {
			for range length() {
				b.Last = append(b.Last, r.NormFloat64())
			}
		}
		if r.IntN(3) == 0 {
			for range length() {
				b.Volume = append(b.Volume, math.Abs(r.NormFloat64()))
			}
		}
		for range length() {
			b.Flags = append(b.Flags, uint32(wide()))
		}
		for range length() {
			b.Sequence = append(b.Sequence, wide())
		}
		raw, err := proto.Marshal(&bridgev1.Frame{Sequence: uint64(i + 1), Body: &bridgev1.Frame_Ticks{Ticks: b}})
		if err != nil {
			t.Fatal(err)
		}
		switch r.IntN(8) {
		case 0: // cut short
			raw = raw[:r.IntN(len(raw)+1)]
		case 1: // a non-minimal varint (0x80 0x00 is 0) appended to the sequence column, as a new frame
			seq := protowire.AppendVarint(nil, 0)
			seq = append([]byte{0x80 | seq[0]}, 0)
			tb := protowire.AppendTag(nil, 8, protowire.BytesType)
			tb = protowire.AppendBytes(tb, seq)
			body := protowire.AppendTag(nil, 14, protowire.BytesType)
			body = protowire.AppendBytes(body, tb)
			raw = body
		}
		slow := &bridgev1.Frame{}
		slowErr := proto.Unmarshal(raw, slow)
		fast, _, ok := decodeTicksFrame(raw, reused)
		if !ok {
			continue
		}
		if fresh, _, ok := decodeTicksFrame(raw, nil); !ok || !proto.Equal(fresh, fast) {
			t.Fatalf("case %d: decoding into used columns differs from a fresh batch", i)
		}
		took++
		if slowErr != nil || !proto.Equal(fast, slow) {
			t.Fatalf("case %d: fast decoder disagrees with proto.Unmarshal (err %v):\n fast %v\n slow %v", i, slowErr, fast, slow)
		}
	}
	if took < 3000 {
		t.Fatalf("the fast decoder took only %d of 5000 frames", took)
	}
}

// BenchmarkDecodeTicksFrame is one 100-tick frame of the bench's shape (time, bid, ask, flags, sequence).
func BenchmarkDecodeTicksFrame(b *testing.B) {
	tb := &mdv1.TickBatch{Symbol: "EURUSD"}
	for i := range 100 {
		tb.TimeMsc = append(tb.TimeMsc, 1_577_898_000_065+int64(i)*2300)
		tb.Bid = append(tb.Bid, 1.1212+float64(i)*1e-5)
		tb.Ask = append(tb.Ask, 1.1214+float64(i)*1e-5)
		tb.Flags = append(tb.Flags, 6)
		tb.Sequence = append(tb.Sequence, uint64(100_000+i))
	}
	raw, _ := proto.Marshal(&bridgev1.Frame{Sequence: 7, SentTimeUs: 1_577_898_000_000_000, Body: &bridgev1.Frame_Ticks{Ticks: tb}})
	into := &mdv1.TickBatch{} // recycled, as the session's frames are
	for b.Loop() {
		if _, _, ok := decodeTicksFrame(raw, into); !ok {
			b.Fatal("not decoded")
		}
	}
}
