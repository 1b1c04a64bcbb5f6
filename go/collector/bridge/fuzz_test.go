package bridge

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/bars"
	"github.com/kairos-mt5/kairos/go/collector/validate"
)

// FuzzFrameDecoder feeds arbitrary bytes to the frame decoder and everything it accepts to
// validation and the bar builders: nothing may panic, oversized frames must be refused, and
// any frame accepted must re-encode to a frame that decodes to the same message.
func FuzzFrameDecoder(f *testing.F) {
	dir := filepath.Join("..", "..", "..", "proto", "testdata", "golden")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".binpb" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		framed := protodelimAppend(data)
		f.Add(framed)
		f.Add(append(framed, framed...))
	}
	f.Add([]byte{0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxBytes = 4096
		br := bufio.NewReader(bytes.NewReader(data))
		v := validate.New(validate.Config{AllowUnknownSymbols: true, FutureTolerance: time.Hour}, nil)
		for range 64 {
			fr, raw, err := readFrame(br, maxBytes)
			if err != nil {
				var tooLarge *protodelim.SizeTooLargeError
				if errors.As(err, &tooLarge) && tooLarge.Size <= maxBytes {
					t.Fatalf("refused a %d-byte frame under the %d limit", tooLarge.Size, maxBytes)
				}
				return
			}
			// The reflection-free decoder must agree with proto.Unmarshal whenever it takes a frame.
			slow := &bridgev1.Frame{}
			slowErr := proto.Unmarshal(raw, slow)
			if fast, _, ok := decodeTicksFrame(raw, nil); ok && (slowErr != nil || !proto.Equal(fast, slow)) {
				t.Fatalf("fast decoder took a frame proto.Unmarshal decodes differently (err %v):\n fast %v\n slow %v", slowErr, fast, slow)
			}
			re, err := proto.Marshal(fr)
			if err != nil {
				t.Fatal(err)
			}
			back := &bridgev1.Frame{}
			if err := proto.Unmarshal(re, back); err != nil || !proto.Equal(fr, back) {
				t.Fatalf("frame does not survive re-encoding: %v", err)
			}
			if info := fr.GetSymbolInfo(); info != nil {
				_ = v.Announce(info)
			}
			if b := fr.GetTicks(); b != nil {
				// The bytes reused as the NATS payload must decode to the very batch validated.
				if tb := ticksBytes(raw); tb != nil {
					again := &mdv1.TickBatch{}
					if err := proto.Unmarshal(tb, again); err != nil || !proto.Equal(again, b) {
						t.Fatalf("ticksBytes gives a different batch: %v", err)
					}
				}
				res := v.Check(b)
				if a := res.Accepted; a != nil {
					bb := bars.NewBuilder(a.Symbol, 60, 0)
					for i := range a.TimeMsc {
						bb.Add(a.TimeMsc[i], a.Bid[i], a.Ask[i], 0)
					}
				}
			}
		}
	})
}

func protodelimAppend(msg []byte) []byte {
	return append(protowire.AppendVarint(nil, uint64(len(msg))), msg...)
}
