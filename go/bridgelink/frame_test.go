package bridgelink

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

func protodelimAppend(f *bridgev1.Frame) ([]byte, error) {
	var b bytes.Buffer
	_, err := protodelim.MarshalTo(&b, f)
	return b.Bytes(), err
}

func netPipe() (net.Conn, net.Conn) { return net.Pipe() }

func TestReadRaw(t *testing.T) {
	body := bytes.Repeat([]byte{0x42}, 100)
	framed := append(protowire.AppendVarint(nil, uint64(len(body))), body...)
	cases := []struct {
		name    string
		in      []byte
		max     int
		want    []byte
		wantErr func(error) bool
	}{
		{"at the limit", framed, 100, body, nil},
		{"one byte over", framed, 99, nil, func(err error) bool {
			var tl *protodelim.SizeTooLargeError
			return errors.As(err, &tl) && tl.Size == 100 && tl.MaxSize == 99
		}},
		{"an empty frame", []byte{0}, 100, []byte{}, nil},
		{"the end between frames", nil, 100, nil, func(err error) bool { return err == io.EOF }},
		{"the end inside the prefix", []byte{0x80}, 100, nil, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"the end inside the body", framed[:50], 100, nil, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"an overlong prefix", bytes.Repeat([]byte{0xff}, 11), 100, nil, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "frame length prefix")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadRaw(bufio.NewReader(bytes.NewReader(tc.in)), tc.max)
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %x, %v", got, err)
			}
		})
	}
}

func TestReadRawInto_readsAFrameIntoTheBufferGetGives(t *testing.T) {
	framed := func(n int) []byte {
		return append(protowire.AppendVarint(nil, uint64(n)), bytes.Repeat([]byte{0x42}, n)...)
	}
	read := func(in []byte, get FrameBuffer) []byte {
		t.Helper()
		got, err := ReadRawInto(bufio.NewReader(bytes.NewReader(in)), 1<<20, get)
		if err != nil || !bytes.Equal(got, in[len(in)-len(got):]) || len(got) != len(in)-protowire.SizeVarint(uint64(len(got))) {
			t.Fatalf("got %d bytes, %v", len(got), err)
		}
		return got
	}
	mine := make([]byte, 7, 4096)
	var asked []int
	get := func(n int) []byte { asked = append(asked, n); return mine }
	if got := read(framed(100), get); &got[0] != &mine[:1][0] || cap(got) != 4096 {
		t.Fatal("a frame that fits was not read into the given buffer")
	}
	if got := read(framed(5000), get); &got[0] == &mine[:1][0] {
		t.Fatal("a frame larger than the given buffer was read into it")
	}
	// Past 64 KiB the buffer grows as the bytes arrive (ReadRaw's bound on a stalled claim): get is not asked.
	read(framed(eagerBytes+1), get)
	if len(asked) != 2 || asked[0] != 100 || asked[1] != 5000 {
		t.Fatalf("get asked for %v", asked)
	}
	read(framed(100), nil)
}

func TestGoldenFramesDecodeAndNameTheirBody(t *testing.T) {
	dir := filepath.Join("..", "..", "proto", "testdata", "golden")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var stream bytes.Buffer
	var want []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "frame_") || filepath.Ext(e.Name()) != ".binpb" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		stream.Write(protowire.AppendVarint(nil, uint64(len(data))))
		stream.Write(data)
		f := &bridgev1.Frame{}
		if err := proto.Unmarshal(data, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, BodyName(f))
	}
	if len(want) < 10 {
		t.Fatalf("only %d golden frames", len(want))
	}
	br := bufio.NewReader(&stream)
	for i, w := range want {
		f, raw, err := ReadFrame(br, DefaultMaxFrameBytes)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if BodyName(f) != w || len(raw) == 0 || w == "other" || w == "none" {
			t.Fatalf("frame %d: body %s, want %s", i, BodyName(f), w)
		}
	}
	if _, _, err := ReadFrame(br, DefaultMaxFrameBytes); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
}

func TestDecodeTriesTheFastPathFirst(t *testing.T) {
	raw, _ := proto.Marshal(&bridgev1.Frame{Sequence: 3, Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{}}})
	fast := &bridgev1.Frame{Sequence: 4}
	if f, err := Decode(raw, func([]byte) (*bridgev1.Frame, bool) { return fast, true }); err != nil || f != fast {
		t.Fatalf("fast path not taken: %v %v", f, err)
	}
	if f, err := Decode(raw, func([]byte) (*bridgev1.Frame, bool) { return nil, false }); err != nil || f.Sequence != 3 {
		t.Fatalf("fallback: %v %v", f, err)
	}
	if _, err := Decode([]byte{0xff, 0xff}, nil); err == nil {
		t.Fatal("garbage decoded")
	}
}

func TestSessionKeys(t *testing.T) {
	for _, id := range []uint64{0, 1, 16, 1 << 63, ^uint64(0)} {
		k := SessionKey(id)
		back, err := ParseSessionKey(k)
		if err != nil || back != id {
			t.Fatalf("%d → %q → %d, %v", id, k, back, err)
		}
	}
	if SessionKey(255) != "bridge:255" {
		t.Fatalf("key %q: the session id is written in decimal, as the logs print it", SessionKey(255))
	}
	for _, k := range []string{"", "bridge:", "bridge:ff", "EURUSD", "bridge:-1"} {
		if _, err := ParseSessionKey(k); err == nil {
			t.Fatalf("%q parsed", k)
		}
	}
}

func TestMetricsOfBothChannelsShareTheirFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	md := NewMetrics(reg, bridgev1.Channel_CHANNEL_MARKET_DATA)
	tr := NewMetrics(reg, bridgev1.Channel_CHANNEL_TRADING)
	md.Duplicates.Inc()
	tr.Connections.Set(1)
	if md.Channel != "market_data" || tr.Channel != "trading" {
		t.Fatalf("labels %q %q", md.Channel, tr.Channel)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]int{}
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	want := map[string]int{
		"kairos_bridge_connections": 2, "kairos_bridge_frame_errors_total": 2 * len(reasons), "kairos_bridge_duplicate_frames_total": 2,
		"kairos_bridge_sequence_gaps_total": 2, "kairos_bridge_gap_frames_total": 2, "kairos_bridge_heartbeat_rtt_seconds": 2,
	}
	for name, n := range want {
		if series[name] != n {
			t.Errorf("%s: %d series, want %d (every series of a channel exists from the start)", name, series[name], n)
		}
	}
	if testutil.ToFloat64(md.Duplicates) != 1 || testutil.ToFloat64(tr.Duplicates) != 0 {
		t.Fatal("channels share a series")
	}
}
