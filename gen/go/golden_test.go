// Cross-language golden vectors: every message in proto/testdata/golden must decode from its
// checked-in bytes, match its text form, and re-encode to the identical bytes, in Go as in Python
// (protobuf and betterproto2) and C (nanopb). A difference means the languages disagree on the wire.
package gen_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// Registers the message types the vectors name.
	_ "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	_ "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

const goldenDir = "../../proto/testdata/golden"

type vector struct {
	name    string
	message protoreflect.FullName
	text    []byte
	wire    []byte
}

// loadVectors reads every .txtpb with its "# proto-message:" header and the .binpb beside it.
func loadVectors(t *testing.T) []vector {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*.txtpb"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden vectors in %s (err %v)", goldenDir, err)
	}
	var out []vector
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var msg protoreflect.FullName
		sc := bufio.NewScanner(bytes.NewReader(text))
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "# proto-message: "); ok {
				msg = protoreflect.FullName(strings.TrimSpace(name))
				break
			}
		}
		if msg == "" {
			t.Fatalf("%s: no '# proto-message:' header", p)
		}
		wire, err := os.ReadFile(strings.TrimSuffix(p, ".txtpb") + ".binpb")
		if err != nil {
			t.Fatalf("%s: %v (run make golden)", p, err)
		}
		out = append(out, vector{strings.TrimSuffix(filepath.Base(p), ".txtpb"), msg, text, wire})
	}
	return out
}

func newMessage(t *testing.T, name protoreflect.FullName) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		t.Fatalf("message type %s: %v", name, err)
	}
	return mt.New().Interface()
}

func TestGoldenVectorsRoundTripByteIdentical(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			decoded := newMessage(t, v.message)
			if err := proto.Unmarshal(v.wire, decoded); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(decoded.ProtoReflect().GetUnknown()) != 0 {
				t.Fatalf("decode left unknown fields: % x", decoded.ProtoReflect().GetUnknown())
			}
			reencoded, err := proto.MarshalOptions{Deterministic: true}.Marshal(decoded)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.Equal(reencoded, v.wire) {
				t.Fatalf("re-encoded bytes differ\n got % x\nwant % x", reencoded, v.wire)
			}
		})
	}
}

func TestGoldenVectorsMatchTheirTextForm(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			fromText := newMessage(t, v.message)
			if err := prototext.Unmarshal(v.text, fromText); err != nil {
				t.Fatalf("parse text: %v", err)
			}
			fromWire := newMessage(t, v.message)
			if err := proto.Unmarshal(v.wire, fromWire); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !proto.Equal(fromText, fromWire) {
				t.Fatalf("wire and text forms differ\ntext: %v\nwire: %v", fromText, fromWire)
			}
		})
	}
}

// TestGoldenFramesStreamDelimited checks the bridge's TCP framing: every Frame vector written
// varint-length-delimited one after another reads back as the same sequence of frames.
func TestGoldenFramesStreamDelimited(t *testing.T) {
	var stream bytes.Buffer
	var frames [][]byte
	for _, v := range loadVectors(t) {
		if v.message != "kairos.bridge.v1.Frame" {
			continue
		}
		m := newMessage(t, v.message)
		if err := proto.Unmarshal(v.wire, m); err != nil {
			t.Fatal(err)
		}
		if _, err := protodelim.MarshalTo(&stream, m); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, v.wire)
	}
	if len(frames) < 10 {
		t.Fatalf("expected at least 10 Frame vectors, found %d", len(frames))
	}
	r := bufio.NewReader(&stream)
	for i, want := range frames {
		m := newMessage(t, "kairos.bridge.v1.Frame")
		if err := protodelim.UnmarshalFrom(r, m); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if !bytes.Equal(got, want) {
			t.Fatalf("frame %d differs after delimited round trip", i)
		}
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes left after the last frame", r.Buffered())
	}
}
