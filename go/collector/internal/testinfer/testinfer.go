// Package testinfer is a small, real InferenceService for tests and benchmarks: it serves
// StreamPredict over gRPC on loopback, answers every request (echoing request_id) and returns one
// prediction per symbol of each request, with the inference hop stamps, so the collector's link can
// be tested against a real peer without the Python server.
package testinfer

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
)

// Server is one endpoint.
type Server struct {
	inferv1.UnimplementedInferenceServiceServer
	Addr string
	g    *grpc.Server
	ln   net.Listener
	wg   sync.WaitGroup

	mu       sync.Mutex
	requests int
	ticks    map[string]int // ticks received per symbol
	bars     map[string]int
	sizes    []int // ticks per request
	// Hold, when set, delays every answer (to test the response timeout).
	hold time.Duration
	// status, when set, is GetModelStatus's answer (else Unimplemented: no warm-up).
	status *inferv1.ModelStatus
	// log keeps every request received, in order (bounded), for tests of ordering.
	log []*inferv1.StreamPredictRequest
}

// maxLog bounds the requests Log keeps.
const maxLog = 100_000

// SetModelStatus makes GetModelStatus describe one serving model needing window bars of periodS.
func (s *Server) SetModelStatus(window, periodS uint32) {
	s.mu.Lock()
	s.status = &inferv1.ModelStatus{ModelName: "testinfer", ModelVersion: "1", Role: "serving",
		State: inferv1.ModelState_MODEL_STATE_SERVING, Window: window, TimeframeS: periodS}
	s.mu.Unlock()
}

// GetModelStatus answers with the status set by SetModelStatus.
func (s *Server) GetModelStatus(context.Context, *inferv1.GetModelStatusRequest) (*inferv1.GetModelStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == nil {
		return nil, status.Error(codes.Unimplemented, "testinfer: no model status set")
	}
	return &inferv1.GetModelStatusResponse{Models: []*inferv1.ModelStatus{proto.Clone(s.status).(*inferv1.ModelStatus)}}, nil
}

// Log returns the requests received so far, in order.
func (s *Server) Log() []*inferv1.StreamPredictRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*inferv1.StreamPredictRequest(nil), s.log...)
}

// Start serves on addr ("127.0.0.1:0" for a free port).
func Start(addr string, opts ...grpc.ServerOption) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), ln: ln, g: grpc.NewServer(opts...), ticks: map[string]int{}, bars: map[string]int{}}
	inferv1.RegisterInferenceServiceServer(s.g, s)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.g.Serve(ln) }()
	return s, nil
}

// Stop ends the server abruptly (connections drop), like a crash.
func (s *Server) Stop() { s.g.Stop(); s.wg.Wait() }

// SetHold delays every answer by d.
func (s *Server) SetHold(d time.Duration) { s.mu.Lock(); s.hold = d; s.mu.Unlock() }

// Ticks returns the ticks received per symbol.
func (s *Server) Ticks() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.ticks))
	for k, v := range s.ticks {
		out[k] = v
	}
	return out
}

// Requests returns the number of requests and the ticks in each.
func (s *Server) Requests() (int, []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, append([]int(nil), s.sizes...)
}

// StreamPredict answers every request.
func (s *Server) StreamPredict(stream grpc.BidiStreamingServer[inferv1.StreamPredictRequest, inferv1.StreamPredictResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		recv := time.Now().UnixMicro()
		s.mu.Lock()
		s.requests++
		n := 0
		for _, b := range req.Ticks {
			s.ticks[b.Symbol] += len(b.TimeMsc)
			n += len(b.TimeMsc)
		}
		for _, b := range req.Bars {
			s.bars[b.Symbol]++
		}
		s.sizes = append(s.sizes, n)
		if len(s.log) < maxLog {
			s.log = append(s.log, req)
		}
		hold := s.hold
		s.mu.Unlock()
		if hold > 0 {
			time.Sleep(hold)
		}
		resp := &inferv1.StreamPredictResponse{RequestId: req.RequestId}
		if req.Warmup { // state only: answered without predictions
			if err := stream.Send(resp); err != nil {
				return err
			}
			continue
		}
		done := time.Now().UnixMicro()
		for _, b := range req.Ticks {
			if len(b.TimeMsc) == 0 {
				continue
			}
			hops := append(append([]*typesv1.HopStamp(nil), req.Hops...),
				&typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_INFERENCE_RECEIVE, TimeUs: recv},
				&typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_INFERENCE_DONE, TimeUs: done},
				&typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_INFERENCE_SEND, TimeUs: time.Now().UnixMicro()})
			resp.Predictions = append(resp.Predictions, &inferv1.Prediction{Symbol: b.Symbol, TimeMsc: b.TimeMsc[len(b.TimeMsc)-1],
				ModelName: "testinfer", ModelVersion: "1", Outputs: []float32{0.2, 0.3, 0.5}, RequestId: req.RequestId, Hops: hops})
		}
		for _, b := range req.Bars {
			resp.Predictions = append(resp.Predictions, &inferv1.Prediction{Symbol: b.Symbol, TimeMsc: b.OpenTimeMsc + int64(b.PeriodS)*1000,
				ModelName: "testinfer", ModelVersion: "1", Outputs: []float32{0.1, 0.8, 0.1}, RequestId: req.RequestId})
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
