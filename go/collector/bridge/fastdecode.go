package bridge

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// decodeTicksFrame decodes the hot-path frame (sequence, ack, sent time and a TickBatch body) without
// reflection, sizing every column once. It returns ok=false for anything else or anything unusual
// (other bodies, unknown or repeated fields, unpacked columns, bad UTF-8); the caller then uses
// proto.Unmarshal, which also produces the precise error for malformed input. Fuzzed against it.
func decodeTicksFrame(buf []byte) (*bridgev1.Frame, []byte, bool) {
	f := &bridgev1.Frame{}
	var ticksRaw []byte
	var seen uint32
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 || num > 31 || seen&(1<<num) != 0 {
			return nil, nil, false
		}
		seen |= 1 << num
		buf = buf[n:]
		switch {
		case num == 1 && typ == protowire.VarintType, num == 2 && typ == protowire.VarintType, num == 3 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(buf)
			if m < 0 {
				return nil, nil, false
			}
			buf = buf[m:]
			switch num {
			case 1:
				f.Sequence = v
			case 2:
				f.Ack = v
			default:
				f.SentTimeUs = int64(v)
			}
		case num == 14 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(buf)
			if m < 0 {
				return nil, nil, false
			}
			ticksRaw = v
			buf = buf[m:]
		default:
			return nil, nil, false
		}
	}
	if ticksRaw == nil {
		return nil, nil, false
	}
	b, ok := decodeTickBatch(ticksRaw)
	if !ok {
		return nil, nil, false
	}
	f.Body = &bridgev1.Frame_Ticks{Ticks: b}
	return f, ticksRaw, true
}

func decodeTickBatch(buf []byte) (*mdv1.TickBatch, bool) {
	b := &mdv1.TickBatch{}
	var seen uint32
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 || typ != protowire.BytesType || num < 1 || num > 8 || seen&(1<<num) != 0 {
			return nil, false
		}
		seen |= 1 << num
		buf = buf[n:]
		v, m := protowire.ConsumeBytes(buf)
		if m < 0 {
			return nil, false
		}
		buf = buf[m:]
		ok := true
		switch num {
		case 1:
			if !utf8.Valid(v) {
				return nil, false
			}
			b.Symbol = string(v)
		case 2:
			b.TimeMsc, ok = varints(v, func(x uint64) int64 { return int64(x) })
		case 3:
			b.Bid, ok = doubles(v)
		case 4:
			b.Ask, ok = doubles(v)
		case 5:
			b.Last, ok = doubles(v)
		case 6:
			b.Volume, ok = doubles(v)
		case 7:
			b.Flags, ok = varints(v, func(x uint64) uint32 { return uint32(x) })
		case 8:
			b.Sequence, ok = varints(v, func(x uint64) uint64 { return x })
		}
		if !ok {
			return nil, false
		}
	}
	return b, true
}

func doubles(v []byte) ([]float64, bool) {
	if len(v)%8 != 0 {
		return nil, false
	}
	if len(v) == 0 {
		return nil, true
	}
	out := make([]float64, len(v)/8)
	for i := range out {
		x, _ := protowire.ConsumeFixed64(v[i*8:])
		out[i] = math.Float64frombits(x)
	}
	return out, true
}

func varints[T int64 | uint32 | uint64](v []byte, conv func(uint64) T) ([]T, bool) {
	if len(v) == 0 {
		return nil, true
	}
	count := 0
	for _, c := range v {
		if c < 0x80 {
			count++
		}
	}
	out := make([]T, 0, count)
	for len(v) > 0 {
		x, m := protowire.ConsumeVarint(v)
		if m < 0 {
			return nil, false
		}
		out = append(out, conv(x))
		v = v[m:]
	}
	return out, true
}
