package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	marketdatav1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

func eurusdInfo() *bridgev1.Frame {
	return &bridgev1.Frame{Sequence: 1, Body: &bridgev1.Frame_SymbolInfo{SymbolInfo: &marketdatav1.SymbolInfo{Symbol: "EURUSD", Digits: 5, Point: 1e-5}}}
}

func ticks(seq uint64, batch *marketdatav1.TickBatch) *bridgev1.Frame {
	return &bridgev1.Frame{Sequence: seq, Body: &bridgev1.Frame_Ticks{Ticks: batch}}
}

func writeStream(t *testing.T, frames ...*bridgev1.Frame) string {
	t.Helper()
	var buf bytes.Buffer
	for _, f := range frames {
		if _, err := protodelim.MarshalTo(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "frames.bin")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSummaryCountsTicksInPointsAndReencodesIdentically(t *testing.T) {
	in := writeStream(t, eurusdInfo(),
		ticks(2, &marketdatav1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1000, 2000}, Bid: []float64{1.12120, 1.12117},
			Ask: []float64{1.12172, 1.12161}, Flags: []uint32{6, 6}, Sequence: []uint64{1, 2}}),
		&bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: 3}}},
		ticks(3, &marketdatav1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{3000}, Bid: []float64{1.12130},
			Ask: []float64{1.12140}, Flags: []uint32{6}, Sequence: []uint64{3}}))
	out := filepath.Join(t.TempDir(), "out.bin")
	var stdout bytes.Buffer
	if err := run(in, out, &stdout); err != nil {
		t.Fatal(err)
	}
	var got summary
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := symbolSummary{Ticks: 3, FirstTimeMsc: 1000, LastTimeMsc: 3000, FirstSequence: 1, LastSequence: 3,
		MinBidPoints: 112117, MaxAskPoints: 112172, SpreadPoints: 52 + 44 + 10}
	if got.Frames != 4 || got.Ticks != 3 || got.LastFrameSequence != 3 || *got.Symbols["EURUSD"] != want {
		t.Fatalf("summary = %+v, EURUSD %+v; want 4 frames, 3 ticks, EURUSD %+v", got, got.Symbols["EURUSD"], want)
	}
	if got.Bodies["ticks"] != 2 || got.Bodies["heartbeat"] != 1 || got.Bodies["symbol_info"] != 1 {
		t.Fatalf("bodies = %v", got.Bodies)
	}
	inBytes, _ := os.ReadFile(in)
	outBytes, _ := os.ReadFile(out)
	if !bytes.Equal(inBytes, outBytes) {
		t.Fatal("re-encoded stream differs from the input")
	}
}

func TestBadStreamsFailNamingTheFrame(t *testing.T) {
	batch := &marketdatav1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1}, Bid: []float64{1.1}, Ask: []float64{1.2}, Sequence: []uint64{1}}
	tests := []struct {
		name   string
		stream func(t *testing.T) string
		want   string
	}{
		{"ticks before their SymbolInfo", func(t *testing.T) string { return writeStream(t, ticks(1, batch)) },
			`frame 1: ticks for "EURUSD" before its SymbolInfo`},
		{"columns of different length", func(t *testing.T) string {
			bad := &marketdatav1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1, 2}, Bid: []float64{1.1}, Ask: []float64{1.2, 1.3}, Sequence: []uint64{1, 2}}
			return writeStream(t, eurusdInfo(), ticks(2, bad))
		}, `frame 2: malformed TickBatch for "EURUSD": column lengths differ`},
		{"truncated frame", func(t *testing.T) string {
			path := writeStream(t, eurusdInfo(), ticks(2, batch))
			raw, _ := os.ReadFile(path)
			if err := os.WriteFile(path, raw[:len(raw)-3], 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, "frame 2: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(tc.stream(t), "", &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
