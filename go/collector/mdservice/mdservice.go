// Package mdservice implements kairos.collector.v1.MarketDataService: Subscribe streams validated
// ticks and closed bars through the fan-out hub, Publish and Stream accept ticks from non-MT5 sources
// with the bridge path's validation, ListSymbols lists what the collector knows.
package mdservice

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/collector/bridge"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/ingest"
	"github.com/kairos-mt5/kairos/go/collector/validate"
)

// maxViolations bounds the field violations listed in one INVALID_ARGUMENT status.
const maxViolations = 100

// Service is the MarketDataService implementation.
type Service struct {
	collectorv1.UnimplementedMarketDataServiceServer
	pipe *ingest.Pipeline
	hub  *fanout.Hub
	stop <-chan struct{}
	hist *bridge.History
}

// New returns the service; streams end when stop is closed (graceful shutdown).
func New(pipe *ingest.Pipeline, hub *fanout.Hub, stop <-chan struct{}) *Service {
	return &Service{pipe: pipe, hub: hub, stop: stop}
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g *grpc.Server) { collectorv1.RegisterMarketDataServiceServer(g, s) }

func filterOf(r *collectorv1.SubscribeRequest) fanout.Filter {
	f := fanout.Filter{Ticks: r.GetTicks(), Symbols: map[string]bool{}, Periods: map[uint32]bool{}}
	for _, s := range r.GetSymbols() {
		f.Symbols[s] = true
	}
	for _, p := range r.GetBarPeriodsS() {
		f.Periods[p] = true
	}
	return f
}

func validateSubscribe(r *collectorv1.SubscribeRequest) error {
	if !r.GetTicks() && len(r.GetBarPeriodsS()) == 0 {
		return status.Error(codes.InvalidArgument, "subscribe to ticks, bars (bar_periods_s) or both")
	}
	for _, p := range r.GetBarPeriodsS() {
		if p == 0 {
			return status.Error(codes.InvalidArgument, "bar_periods_s must be positive")
		}
	}
	return nil
}

func (s *Service) symbolInfos(f fanout.Filter) []*mdv1.SymbolInfo {
	var out []*mdv1.SymbolInfo
	for _, info := range s.pipe.Symbols() {
		if len(f.Symbols) == 0 || f.Symbols[info.Symbol] {
			out = append(out, info)
		}
	}
	return out
}

// Subscribe streams the selected market data until the client goes away, the server stops, or
// (cut policy) the client falls too far behind.
func (s *Service) Subscribe(req *collectorv1.SubscribeRequest, stream grpc.ServerStreamingServer[collectorv1.SubscribeResponse]) error {
	if err := validateSubscribe(req); err != nil {
		return err
	}
	f := filterOf(req)
	sub := s.hub.Subscribe(f)
	defer sub.Close()
	for _, info := range s.symbolInfos(f) {
		if err := stream.Send(&collectorv1.SubscribeResponse{Event: &collectorv1.SubscribeResponse_SymbolInfo{SymbolInfo: info}}); err != nil {
			return err
		}
	}
	ctxDone := stream.Context().Done()
	stopAll := mergeStop(ctxDone, s.stop)
	defer stopAll.close()
	for {
		evs, ok := sub.Next(stopAll.c)
		if !ok {
			return s.endErr(sub, stream.Context().Err())
		}
		for _, e := range evs {
			var resp collectorv1.SubscribeResponse
			switch {
			case e.Ticks != nil:
				resp.Event = &collectorv1.SubscribeResponse_Ticks{Ticks: e.Ticks}
			case e.Bar != nil:
				resp.Event = &collectorv1.SubscribeResponse_Bar{Bar: e.Bar}
			default:
				resp.Event = &collectorv1.SubscribeResponse_SymbolInfo{SymbolInfo: e.SymbolInfo}
			}
			if err := stream.Send(&resp); err != nil {
				return err
			}
		}
	}
}

func (s *Service) endErr(sub *fanout.Subscriber, ctxErr error) error {
	if err := sub.Err(); errors.Is(err, fanout.ErrTooSlow) {
		return status.Error(codes.ResourceExhausted, "subscriber too slow: its queue of pending market data overflowed; reconnect, or read faster")
	}
	if ctxErr != nil {
		return status.FromContextError(ctxErr).Err()
	}
	return status.Error(codes.Unavailable, "collector shutting down")
}

// stopper merges two stop channels into one; close also fires it, so helpers waiting on it end.
type stopper struct {
	c    chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

func mergeStop(a, b <-chan struct{}) *stopper {
	s := &stopper{c: make(chan struct{}), done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.c)
		select {
		case <-a:
		case <-b:
		case <-s.done:
		}
	}()
	return s
}

func (s *stopper) close() { close(s.done); s.wg.Wait() }

func sourceName(stream grpc.ServerStream, name string) string {
	if name != "" {
		return name
	}
	// Unnamed publishers are tracked per host, not per connection, so reconnects do not pile up sources.
	if p, ok := peer.FromContext(stream.Context()); ok {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return "grpc:" + host
		}
		return "grpc:" + p.Addr.String()
	}
	return "grpc:anonymous"
}

// announceCode is INVALID_ARGUMENT for bad symbol info, RESOURCE_EXHAUSTED for a symbol refused
// because the collector holds its maximum.
func announceCode(err error) codes.Code {
	if errors.Is(err, ingest.ErrTooManySymbols) {
		return codes.ResourceExhausted
	}
	return codes.InvalidArgument
}

func rejectCounts(r *validate.Result) []*collectorv1.RejectCount {
	var out []*collectorv1.RejectCount
	for reason, c := range r.Rejects {
		if c > 0 {
			out = append(out, &collectorv1.RejectCount{Reason: mdv1.TickRejectReason(reason), Count: c})
		}
	}
	return out
}

// receiveHops stamps the moment a published batch was decoded, so inference can measure from here.
func receiveHops() []*typesv1.HopStamp {
	return []*typesv1.HopStamp{{Stage: typesv1.HopStage_HOP_STAGE_COLLECTOR_RECEIVE, TimeUs: time.Now().UnixMicro()}}
}

// Publish validates and ingests every published batch. Valid ticks are kept even when others in
// the stream are rejected; if any was rejected the call ends with INVALID_ARGUMENT whose details
// hold a BadRequest naming each rejected tick (message index, tick index, reason) and the
// PublishResponse counts.
func (s *Service) Publish(stream grpc.ClientStreamingServer[collectorv1.PublishRequest, collectorv1.PublishResponse]) error {
	var (
		resp       collectorv1.PublishResponse
		byReason   [validate.NumReasons]uint64
		violations []*errdetails.BadRequest_FieldViolation
		msgIndex   int
	)
	for ; ; msgIndex++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		src, err := s.pipe.PublisherSource(sourceName(stream, req.GetSource()))
		if err != nil {
			return status.Errorf(codes.ResourceExhausted, "message %d: %v", msgIndex, err)
		}
		switch p := req.GetPayload().(type) {
		case *collectorv1.PublishRequest_SymbolInfo:
			if err := src.Announce(p.SymbolInfo); err != nil {
				return status.Errorf(announceCode(err), "message %d: %v", msgIndex, err)
			}
		case *collectorv1.PublishRequest_Ticks:
			res := src.Ticks(p.Ticks, receiveHops())
			if res.Accepted != nil {
				resp.Accepted += uint64(len(res.Accepted.TimeMsc))
			}
			resp.Rejected += res.RejectedTotal
			for r, c := range res.Rejects {
				byReason[r] += c
			}
			for _, rj := range res.Rejected {
				if len(violations) < maxViolations {
					violations = append(violations, &errdetails.BadRequest_FieldViolation{
						Field:       fmt.Sprintf("messages[%d].ticks[%d]", msgIndex, rj.Index),
						Description: fmt.Sprintf("%s: %s", validate.ReasonName(rj.Reason), rj.Detail),
						Reason:      rj.Reason.String(),
					})
				}
			}
		default:
			return status.Errorf(codes.InvalidArgument, "message %d: no payload (symbol_info or ticks)", msgIndex)
		}
	}
	for r, c := range byReason {
		if c > 0 {
			resp.Rejects = append(resp.Rejects, &collectorv1.RejectCount{Reason: mdv1.TickRejectReason(r), Count: c})
		}
	}
	if resp.Rejected == 0 {
		return stream.SendAndClose(&resp)
	}
	st := status.New(codes.InvalidArgument, fmt.Sprintf("%d of %d ticks rejected (the %d valid ticks were accepted); see details",
		resp.Rejected, resp.Rejected+resp.Accepted, resp.Accepted))
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: violations}, proto.Clone(&resp).(*collectorv1.PublishResponse)); err == nil {
		st = d
	}
	return st.Err()
}

// Stream publishes and subscribes on one call. Every published batch is acknowledged in order
// with what was accepted and rejected; market data follows the latest subscription.
func (s *Service) Stream(stream grpc.BidiStreamingServer[collectorv1.StreamRequest, collectorv1.StreamResponse]) error {
	sub := s.hub.Subscribe(fanout.Filter{})
	defer sub.Close()
	acks := make(chan *collectorv1.StreamResponse, 64)
	recvErr := make(chan error, 1)
	infos := make(chan []*mdv1.SymbolInfo, 1)
	stopRecv := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		recvErr <- s.streamReceive(stream, sub, acks, infos, stopRecv)
	}()
	defer wg.Wait()
	defer close(stopRecv)

	stopAll := mergeStop(stream.Context().Done(), s.stop)
	defer stopAll.close()
	// Data events are fetched by a helper so acks and data can be multiplexed on one Send loop.
	evCh := make(chan []fanout.Event)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(evCh)
		for {
			evs, ok := sub.Next(stopAll.c)
			if !ok {
				return
			}
			select {
			case evCh <- evs:
			case <-stopAll.c:
				return
			}
		}
	}()
	send := func(r *collectorv1.StreamResponse) error { return stream.Send(r) }
	for {
		select {
		case a := <-acks:
			if err := send(a); err != nil {
				return err
			}
		case list := <-infos:
			for _, info := range list {
				if err := send(&collectorv1.StreamResponse{Response: &collectorv1.StreamResponse_SymbolInfo{SymbolInfo: info}}); err != nil {
					return err
				}
			}
		case evs, ok := <-evCh:
			if !ok {
				return s.endErr(sub, stream.Context().Err())
			}
			for _, e := range evs {
				var r collectorv1.StreamResponse
				switch {
				case e.Ticks != nil:
					r.Response = &collectorv1.StreamResponse_Ticks{Ticks: e.Ticks}
				case e.Bar != nil:
					r.Response = &collectorv1.StreamResponse_Bar{Bar: e.Bar}
				default:
					r.Response = &collectorv1.StreamResponse_SymbolInfo{SymbolInfo: e.SymbolInfo}
				}
				if err := send(&r); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if err != nil {
				return err
			}
			// The client closed its side: send the remaining acks and end.
			for {
				select {
				case a := <-acks:
					if err := send(a); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		}
	}
}

func (s *Service) streamReceive(stream grpc.BidiStreamingServer[collectorv1.StreamRequest, collectorv1.StreamResponse],
	sub *fanout.Subscriber, acks chan<- *collectorv1.StreamResponse, infos chan<- []*mdv1.SymbolInfo, stop <-chan struct{}) error {
	lastSeq := map[string]uint64{}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var ack *collectorv1.StreamResponse
		switch r := req.GetRequest().(type) {
		case *collectorv1.StreamRequest_Subscribe:
			if err := validateSubscribe(r.Subscribe); err != nil {
				return err
			}
			f := filterOf(r.Subscribe)
			sub.SetFilter(f)
			select {
			case infos <- s.symbolInfos(f):
			case <-stop:
				return nil
			}
			continue
		case *collectorv1.StreamRequest_Publish:
			src, err := s.pipe.PublisherSource(sourceName(stream, r.Publish.GetSource()))
			if err != nil {
				return status.Error(codes.ResourceExhausted, err.Error())
			}
			switch p := r.Publish.GetPayload().(type) {
			case *collectorv1.PublishRequest_SymbolInfo:
				if err := src.Announce(p.SymbolInfo); err != nil {
					return status.Errorf(announceCode(err), "symbol info: %v", err)
				}
				continue
			case *collectorv1.PublishRequest_Ticks:
				res := src.Ticks(p.Ticks, receiveHops())
				a := &collectorv1.PublishAck{Symbol: p.Ticks.GetSymbol(), Rejects: rejectCounts(&res)}
				if res.Accepted != nil {
					a.Accepted = uint64(len(res.Accepted.TimeMsc))
					if seqs := res.Accepted.Sequence; len(seqs) > 0 {
						lastSeq[a.Symbol] = max(lastSeq[a.Symbol], seqs[len(seqs)-1])
					}
				}
				a.LastSequence = lastSeq[a.Symbol]
				ack = &collectorv1.StreamResponse{Response: &collectorv1.StreamResponse_Ack{Ack: a}}
			default:
				return status.Error(codes.InvalidArgument, "publish without a payload")
			}
		default:
			return status.Error(codes.InvalidArgument, "empty stream request")
		}
		select {
		case acks <- ack:
		case <-stop:
			return nil
		}
	}
}

// ListSymbols returns every known symbol, sorted by name.
func (s *Service) ListSymbols(_ context.Context, _ *collectorv1.ListSymbolsRequest) (*collectorv1.ListSymbolsResponse, error) {
	syms := s.pipe.Symbols()
	sort.Slice(syms, func(i, j int) bool { return syms[i].Symbol < syms[j].Symbol })
	return &collectorv1.ListSymbolsResponse{Symbols: syms}, nil
}
