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

// frameBufs recycles the buffers frames are read into (bridgelink.Config.FrameBuffer): a tick
// frame's bytes are the NATS payload until the publisher has sent them (ingest then frees them,
// Source.TicksLoanedFrame), and read a later frame after that. Other frames' buffers are not freed.
var frameBufs sync.Pool // *[]byte

// maxFrameBuf bounds the buffers kept: a frame larger than this gets a buffer of its own.
const maxFrameBuf = 64 << 10

// frameBuffer is the link's FrameBuffer: a recycled buffer if one has room for n bytes.
func frameBuffer(n int) []byte {
	if p, _ := frameBufs.Get().(*[]byte); p != nil && cap(*p) >= n {
		return *p
	}
	// Rounded up to 4 KiB, so frames that grow a little still fit the next time.
	return make([]byte, 0, (n+4095)&^4095)
}

// freeFrame puts a frame's buffer back (ingest.Frame.Free).
func freeFrame(b []byte) {
	if cap(b) <= maxFrameBuf {
		frameBufs.Put(&b)
	}
}

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
	tf := &ticksFrame{}
	f := &tf.frame
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
	tf.body.Ticks = b
	f.Body = &tf.body
	return f, ticksRaw, true
}

// ticksFrame is a decoded tick frame and its body in one allocation instead of two (the body's
// pointer keeps the frame alive, and the frame's the body).
type ticksFrame struct {
	frame bridgev1.Frame
	body  bridgev1.Frame_Ticks
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
	if out, ok := varintsByEnds(out, v); ok {
		return out, true
	}
	out = out[:0]
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
				out = append(out, T(pack7(w)&(1<<(7*n)-1)))
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

// maxEndsWords bounds the columns varintsByEnds takes (64 bytes a word of its bitmap, on the stack).
const maxEndsWords = 32

// varintsByEnds decodes a packed varint column of values up to 8 bytes long, appending to out, and
// reports false for anything else (a longer value, a column that does not end a value, or longer
// than maxEndsWords*64 bytes; varints then decodes it value by value, which also rejects what is
// malformed). It first marks where values end (a byte without its continuation bit), eight bytes at
// a time and independently of the values, then takes the values from the marks: one value's loads
// no longer wait for the previous value's length, the serial chain of decoding value by value.
func varintsByEnds[T int64 | uint32 | uint64](out []T, v []byte) ([]T, bool) {
	if len(v) > maxEndsWords*64 || v[len(v)-1] >= 0x80 {
		return out, false
	}
	var ends [maxEndsWords]uint64 // bit i: byte i ends a value
	all := uint64(0x8080808080808080)
	i := 0
	for ; i+8 <= len(v); i += 8 {
		m := ^binary.LittleEndian.Uint64(v[i:]) & 0x8080808080808080
		all &= m
		// The eight stop bits (bits 7, 15, ..., 63) gathered into one byte, byte k's at bit k.
		ends[i>>6] |= ((m >> 7) * 0x0102040810204080 >> 56) << (i & 63)
	}
	for ; i < len(v); i++ {
		ends[i>>6] |= uint64(^v[i]>>7) << (i & 63)
		if v[i] >= 0x80 {
			all = 0
		}
	}
	if all == 0x8080808080808080 { // one byte a value (flags, small numbers)
		for _, c := range v {
			out = append(out, T(c))
		}
		return out, true
	}
	start := 0
	for w := range (len(v) + 63) >> 6 {
		for e := ends[w]; e != 0; e &= e - 1 {
			end := w<<6 + bits.TrailingZeros64(e)
			n := end - start + 1
			if n > 8 {
				return out, false
			}
			var x uint64
			if start+8 <= len(v) {
				x = binary.LittleEndian.Uint64(v[start:])
			} else {
				for k, c := range v[start : end+1] {
					x |= uint64(c) << (8 * k)
				}
			}
			out = append(out, T(pack7(x)&(1<<(7*n)-1)))
			start = end + 1
		}
	}
	return out, true
}

// pack7 joins the low seven bits of w's eight bytes (little-endian) into 56 bits: byte k's go to bits
// 7k to 7k+6. Pairs of bytes, then pairs of pairs, then the two halves: three steps, not eight.
func pack7(w uint64) uint64 {
	w &= 0x7f7f7f7f7f7f7f7f
	w = w&0x007f007f007f007f | w>>1&0x3f803f803f803f80
	w = w&0x00003fff00003fff | w>>2&0x0fffc0000fffc000
	return w&0x000000000fffffff | w>>4&0x00fffffff0000000
}
