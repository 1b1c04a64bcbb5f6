package bridge

import (
	"encoding/binary"
	"math"
	"math/bits"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// batches recycles the decoded TickBatches of tick frames (their columns): a session hands each
// batch to ingest as a loan (ingest.Source.TicksLoaned) and puts it back once the frame is handled.
var batches = sync.Pool{New: func() any { return new(mdv1.TickBatch) }}

// recycle puts a tick frame's batch back for the next frame. One that proto.Unmarshal filled may
// hold unknown fields the fast decoder would not clear: it is left to the garbage collector.
func recycle(b *mdv1.TickBatch) {
	if b != nil && b.ProtoReflect().GetUnknown() == nil {
		batches.Put(b)
	}
}

// decodeTicksFrame decodes the hot-path frame (sequence, ack, sent time and a TickBatch body) without
// reflection, into b's columns (their capacity is reused; a fresh batch if b is nil). It returns
// ok=false for anything else or anything unusual (other bodies, unknown or repeated fields, unpacked
// columns, bad UTF-8); the caller then uses proto.Unmarshal, which also produces the precise error
// for malformed input. Fuzzed against it.
func decodeTicksFrame(buf []byte, b *mdv1.TickBatch) (*bridgev1.Frame, []byte, bool) {
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
	if b == nil {
		b = &mdv1.TickBatch{}
	}
	if !decodeTickBatch(ticksRaw, b) {
		return nil, nil, false
	}
	f.Body = &bridgev1.Frame_Ticks{Ticks: b}
	return f, ticksRaw, true
}

// decodeTickBatch sets every field of b from buf (columns absent from buf end up empty).
func decodeTickBatch(buf []byte, b *mdv1.TickBatch) bool {
	// First the fields' bytes, then the columns: the packed doubles give the tick count, so the
	// varint columns are sized without a counting pass.
	var cols [9][]byte
	var seen uint32
	for len(buf) > 0 {
		num, typ, n := protowire.ConsumeTag(buf)
		if n < 0 || typ != protowire.BytesType || num < 1 || num > 8 || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		buf = buf[n:]
		v, m := protowire.ConsumeBytes(buf)
		if m < 0 {
			return false
		}
		buf = buf[m:]
		cols[num] = v
	}
	if !utf8.Valid(cols[1]) {
		return false
	}
	if b.Symbol != string(cols[1]) { // the same symbol frame after frame: no new string
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
	if b.Bid, ok = doubles(b.Bid, cols[3]); !ok {
		return false
	}
	if b.Ask, ok = doubles(b.Ask, cols[4]); !ok {
		return false
	}
	if b.Last, ok = doubles(b.Last, cols[5]); !ok {
		return false
	}
	if b.Volume, ok = doubles(b.Volume, cols[6]); !ok {
		return false
	}
	if b.TimeMsc, ok = varints(b.TimeMsc, cols[2], hint); !ok {
		return false
	}
	if b.Flags, ok = varints(b.Flags, cols[7], hint); !ok {
		return false
	}
	if b.Sequence, ok = varints(b.Sequence, cols[8], hint); !ok {
		return false
	}
	return true
}

// doubles decodes a packed double column into dst's storage.
func doubles(dst []float64, v []byte) ([]float64, bool) {
	if len(v)%8 != 0 {
		return nil, false
	}
	if len(v) == 0 {
		return dst[:0], true
	}
	n := len(v) / 8
	if cap(dst) < n {
		dst = make([]float64, n)
	}
	out := dst[:n]
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(v[i*8:]))
	}
	return out, true
}

// varints decodes a packed varint column into dst's storage; hint, when not negative, is the
// expected count (the columns of a well-formed batch are equally long), else the count is taken
// from the bytes. Values longer than 9 bytes go to protowire, which also rejects malformed ones.
func varints[T int64 | uint32 | uint64](dst []T, v []byte, hint int) ([]T, bool) {
	if len(v) == 0 {
		return dst[:0], true
	}
	if hint < 0 || hint > len(v) {
		hint = 0
		for _, c := range v {
			if c < 0x80 {
				hint++
			}
		}
	}
	out := dst[:0]
	if cap(out) < hint {
		out = make([]T, 0, hint)
	}
	for i := 0; i < len(v); {
		c := v[i]
		if c < 0x80 {
			out = append(out, T(c))
			i++
			continue
		}
		if i+8 <= len(v) {
			// Eight bytes at once: the first byte without its continuation bit ends the value.
			w := binary.LittleEndian.Uint64(v[i:])
			if stops := ^w & 0x8080808080808080; stops != 0 {
				n := bits.TrailingZeros64(stops)/8 + 1
				x := w&0x7f | w>>1&(0x7f<<7) | w>>2&(0x7f<<14) | w>>3&(0x7f<<21) |
					w>>4&(0x7f<<28) | w>>5&(0x7f<<35) | w>>6&(0x7f<<42) | w>>7&(0x7f<<49)
				out = append(out, T(x&(1<<(7*n)-1)))
				i += n
				continue
			}
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
