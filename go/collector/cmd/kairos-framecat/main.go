// Command kairos-framecat reads a stream of bridge frames (kairos.bridge.v1.Frame, each preceded
// by its varint length, as the MT5 DLL writes them on TCP) and prints a JSON summary: frames by
// body, ticks per symbol with time and sequence range, and price extremes in points. With -o it
// also writes every frame re-encoded, which must equal the input byte for byte.
//
// It is the Go side of the cross-language check in `make demo`; cpp/mt5_bridge/tools/framecat.c
// is the C (nanopb) side. Usage: kairos-framecat [-o reencoded.bin] frames.bin
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// symbolSummary holds integer figures only, so that every language prints identical JSON.
type symbolSummary struct {
	Ticks         int64  `json:"ticks"`
	FirstTimeMsc  int64  `json:"first_time_msc"`
	LastTimeMsc   int64  `json:"last_time_msc"`
	FirstSequence uint64 `json:"first_sequence"`
	LastSequence  uint64 `json:"last_sequence"`
	MinBidPoints  int64  `json:"min_bid_points"`
	MaxAskPoints  int64  `json:"max_ask_points"`
	SpreadPoints  int64  `json:"spread_points_sum"`
}

type summary struct {
	Frames            int64                     `json:"frames"`
	Bodies            map[string]int64          `json:"bodies"`
	Ticks             int64                     `json:"ticks"`
	LastFrameSequence uint64                    `json:"last_frame_sequence"`
	Symbols           map[string]*symbolSummary `json:"symbols"`
}

func main() {
	out := flag.String("o", "", "write the re-encoded frames to this file")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: kairos-framecat [-o reencoded.bin] frames.bin")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *out, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kairos-framecat:", err)
		os.Exit(1)
	}
}

func run(inPath, outPath string, stdout io.Writer) error {
	in, err := os.Open(inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	var reencoded *bufio.Writer
	if outPath != "" {
		f, err := os.Create(outPath)
		if err != nil {
			return err
		}
		defer f.Close()
		reencoded = bufio.NewWriter(f)
		defer reencoded.Flush()
	}

	s := summary{Bodies: map[string]int64{}, Symbols: map[string]*symbolSummary{}}
	points := map[string]float64{} // symbol -> point size, from SymbolInfo frames
	delimited := protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}
	r := bufio.NewReader(in)
	for {
		frame := &bridgev1.Frame{}
		err := protodelim.UnmarshalFrom(r, frame)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("frame %d: %w", s.Frames+1, err)
		}
		s.Frames++
		s.LastFrameSequence = frame.GetSequence()
		s.Bodies[string(frame.ProtoReflect().WhichOneof(frame.ProtoReflect().Descriptor().Oneofs().ByName("body")).Name())]++
		switch body := frame.GetBody().(type) {
		case *bridgev1.Frame_SymbolInfo:
			points[body.SymbolInfo.GetSymbol()] = body.SymbolInfo.GetPoint()
		case *bridgev1.Frame_Ticks:
			if err := addTicks(&s, body, points); err != nil {
				return fmt.Errorf("frame %d: %w", s.Frames, err)
			}
		}
		if reencoded != nil {
			if _, err := delimited.MarshalTo(reencoded, frame); err != nil {
				return err
			}
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

func addTicks(s *summary, body *bridgev1.Frame_Ticks, points map[string]float64) error {
	b := body.Ticks
	point, ok := points[b.GetSymbol()]
	if !ok || point <= 0 {
		return fmt.Errorf("ticks for %q before its SymbolInfo", b.GetSymbol())
	}
	n := len(b.GetTimeMsc())
	if len(b.GetBid()) != n || len(b.GetAsk()) != n || len(b.GetSequence()) != n {
		return fmt.Errorf("malformed TickBatch for %q: column lengths differ", b.GetSymbol())
	}
	sym := s.Symbols[b.GetSymbol()]
	if sym == nil {
		sym = &symbolSummary{FirstTimeMsc: b.GetTimeMsc()[0], FirstSequence: b.GetSequence()[0],
			MinBidPoints: math.MaxInt64, MaxAskPoints: math.MinInt64}
		s.Symbols[b.GetSymbol()] = sym
	}
	for i := range n {
		bid := int64(math.Floor(b.GetBid()[i]/point + 0.5))
		ask := int64(math.Floor(b.GetAsk()[i]/point + 0.5))
		sym.MinBidPoints = min(sym.MinBidPoints, bid)
		sym.MaxAskPoints = max(sym.MaxAskPoints, ask)
		sym.SpreadPoints += ask - bid
	}
	sym.Ticks += int64(n)
	sym.LastTimeMsc = b.GetTimeMsc()[n-1]
	sym.LastSequence = b.GetSequence()[n-1]
	s.Ticks += int64(n)
	return nil
}
