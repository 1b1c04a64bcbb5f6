package bridge

import (
	"encoding/binary"
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
	// First the fields' bytes, then the columns: the packed doubles give the tick count, so the
	// varint columns are sized without a counting pass.
	var cols [9][]byte
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
		cols[num] = v
	}
	b := &mdv1.TickBatch{}
	if seen&(1<<1) != 0 {
		if !utf8.Valid(cols[1]) {
			return nil, false
		}
		b.Symbol = string(cols[1])
	}
	hint := -1
	for _, num := range [...]int{3, 4, 5, 6} {
		if len(cols[num]) > 0 {
			hint = len(cols[num]) / 8
			break
		}
	}
	ok := true
	if b.Bid, ok = doubles(cols[3]); !ok {
		return nil, false
	}
	if b.Ask, ok = doubles(cols[4]); !ok {
		return nil, false
	}
	if b.Last, ok = doubles(cols[5]); !ok {
		return nil, false
	}
	if b.Volume, ok = doubles(cols[6]); !ok {
		return nil, false
	}
	if b.TimeMsc, ok = varints[int64](cols[2], hint); !ok {
		return nil, false
	}
	if b.Flags, ok = varints[uint32](cols[7], hint); !ok {
		return nil, false
	}
	if b.Sequence, ok = varints[uint64](cols[8], hint); !ok {
		return nil, false
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
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(v[i*8:]))
	}
	return out, true
}

// varints decodes a packed varint column; hint, when not negative, is the expected count (the
// columns of a well-formed batch are equally long), else the count is taken from the bytes.
// Values longer than 9 bytes go to protowire, which also rejects malformed ones.
func varints[T int64 | uint32 | uint64](v []byte, hint int) ([]T, bool) {
	if len(v) == 0 {
		return nil, true
	}
	if hint < 0 || hint > len(v) {
		hint = 0
		for _, c := range v {
			if c < 0x80 {
				hint++
			}
		}
	}
	out := make([]T, 0, hint)
	for i := 0; i < len(v); {
		c := v[i]
		if c < 0x80 {
			out = append(out, T(c))
			i++
			continue
		}
		x := uint64(c & 0x7f)
		j, s := i+1, uint(7)
		for ; j < len(v) && j < i+9; j, s = j+1, s+7 {
			c = v[j]
			x |= uint64(c&0x7f) << s
			if c < 0x80 {
				break
			}
		}
		if j < len(v) && j < i+9 {
			out = append(out, T(x))
			i = j + 1
			continue
		}
		y, m := protowire.ConsumeVarint(v[i:])
		if m < 0 {
			return nil, false
		}
		out = append(out, T(y))
		i += m
	}
	return out, true
}
