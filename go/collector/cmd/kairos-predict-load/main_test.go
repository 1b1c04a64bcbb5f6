package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
)

func TestScanReadsTheIdAndCountsPredictionsAndRejectionsAsTheFullDecodeDoes(t *testing.T) {
	pred := func(sym string) *inferv1.Prediction {
		return &inferv1.Prediction{Symbol: sym, ModelName: "m", ModelVersion: "v", Outputs: []float32{0.1, 0.8, 0.1},
			Hops: []*typesv1.HopStamp{{Stage: typesv1.HopStage_HOP_STAGE_INFERENCE_RECEIVE, TimeUs: 1}}}
	}
	cases := []*inferv1.StreamPredictResponse{
		{},
		{RequestId: 7},
		{RequestId: 1 << 40, Predictions: []*inferv1.Prediction{pred("EURUSD"), pred("GBPUSD")}},
		{RequestId: 3, Rejections: []*inferv1.InputRejection{{Field: "bars[0]", Reason: "PERIOD_MISMATCH"}}},
		{RequestId: 9, Predictions: []*inferv1.Prediction{pred("A")}, Rejections: []*inferv1.InputRejection{{}, {Reason: "X"}}},
	}
	for _, c := range cases {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := scan(b)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		want := response{requestID: c.GetRequestId(), predictions: len(c.GetPredictions()), rejections: len(c.GetRejections())}
		if got != want {
			t.Errorf("scan(%v) = %+v, want %+v", c, got, want)
		}
	}
	if _, err := scan([]byte{0x12, 0x05, 0x01}); err == nil {
		t.Error("a truncated prediction: want an error")
	}
}

func TestReadRequestsNamesTheFileAndTheRequestItCannotRead(t *testing.T) {
	dir := t.TempDir()
	var buf []byte
	for _, id := range []uint64{1, 2} {
		b, _ := proto.Marshal(&inferv1.StreamPredictRequest{RequestId: id})
		buf = binary.AppendUvarint(buf, uint64(len(b)))
		buf = append(buf, b...)
	}
	good := filepath.Join(dir, "good.bin")
	if err := os.WriteFile(good, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	reqs, err := readRequests(good)
	if err != nil || len(reqs) != 2 || reqs[0].id != 1 || reqs[1].id != 2 {
		t.Fatalf("readRequests = %v, %v", reqs, err)
	}
	bad := filepath.Join(dir, "bad.bin")
	if err := os.WriteFile(bad, append(buf, 0x10, 0x08), 0o600); err != nil { // a third that claims 16 bytes
		t.Fatal(err)
	}
	if _, err := readRequests(bad); err == nil || !strings.Contains(err.Error(), "bad.bin: request 3") {
		t.Fatalf("want the file and request 3 named, got %v", err)
	}
}
