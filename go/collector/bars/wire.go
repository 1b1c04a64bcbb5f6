package bars

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// AppendProto appends b's protobuf encoding to dst, byte for byte what proto.Marshal produces (tested),
// without reflection or a fresh buffer: several bars close per 100 ticks of a quiet market, and each
// is a NATS message. The symbol must be valid UTF-8 (proto.Marshal refuses it otherwise; callers
// with unchecked input use proto.Marshal).
func AppendProto(dst []byte, b *mdv1.Bar) []byte {
	if b.Symbol != "" {
		dst = protowire.AppendTag(dst, 1, protowire.BytesType)
		dst = protowire.AppendString(dst, b.Symbol)
	}
	if b.PeriodS != 0 {
		dst = protowire.AppendTag(dst, 2, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(b.PeriodS))
	}
	if b.OpenTimeMsc != 0 {
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(b.OpenTimeMsc))
	}
	dst = appendDouble(dst, 4, b.Open)
	dst = appendDouble(dst, 5, b.High)
	dst = appendDouble(dst, 6, b.Low)
	dst = appendDouble(dst, 7, b.Close)
	if b.TickVolume != 0 {
		dst = protowire.AppendTag(dst, 8, protowire.VarintType)
		dst = protowire.AppendVarint(dst, b.TickVolume)
	}
	dst = appendDouble(dst, 9, b.RealVolume)
	if b.SpreadPoints != 0 {
		dst = protowire.AppendTag(dst, 10, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(b.SpreadPoints))) // int32: sign-extended, as proto does
	}
	return appendDouble(dst, 11, b.SpreadMean)
}

// ProtoSize is len(AppendProto(nil, b)) without encoding.
func ProtoSize(b *mdv1.Bar) int {
	n := 0
	if b.Symbol != "" {
		n += 1 + protowire.SizeBytes(len(b.Symbol))
	}
	if b.PeriodS != 0 {
		n += 1 + protowire.SizeVarint(uint64(b.PeriodS))
	}
	if b.OpenTimeMsc != 0 {
		n += 1 + protowire.SizeVarint(uint64(b.OpenTimeMsc))
	}
	for _, x := range [...]float64{b.Open, b.High, b.Low, b.Close, b.RealVolume, b.SpreadMean} {
		if math.Float64bits(x) != 0 {
			n += 9
		}
	}
	if b.TickVolume != 0 {
		n += 1 + protowire.SizeVarint(b.TickVolume)
	}
	if b.SpreadPoints != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(b.SpreadPoints)))
	}
	return n
}

// appendDouble writes a proto3 double field unless it is +0 (proto3 leaves out the zero value
// only; -0 and NaN are written).
func appendDouble(dst []byte, num protowire.Number, x float64) []byte {
	bits := math.Float64bits(x)
	if bits == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(dst, bits)
}
