// Package service is the gRPC face of the execution engine: kairos.execution.v1.ExecutionService
// with bearer-token authentication on every call (auth.go), request validation that answers bad input with
// INVALID_ARGUMENT and field details, and one place that maps engine errors to status codes.
package service

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

const errorDomain = "execution.kairos"

// Server implements ExecutionService.
type Server struct {
	execv1.UnimplementedExecutionServiceServer
	eng *engine.Engine
	jr  *journal.Journal
	lim Limits

	streams atomic.Int64 // StreamExecutionReports calls running
}

// Limits bounds what report subscribers may hold (ADR 0055). Zero values mean the defaults.
type Limits struct {
	// MaxReportStreams is the number of StreamExecutionReports calls at once; more are refused
	// RESOURCE_EXHAUSTED.
	MaxReportStreams int
	// ReportBufferBytes bounds the reports queued for one subscriber, in bytes; one further
	// behind is cut (RESOURCE_EXHAUSTED, resume with after_sequence).
	ReportBufferBytes int
	// Metrics, if set, counts streams, refusals and cuts.
	Metrics *metrics.Metrics
}

// Default limits.
const (
	DefaultMaxReportStreams  = 64
	DefaultReportBufferBytes = 8 << 20
	reportBufferEntries      = 8192
)

// New returns the service over an engine and its journal, with the default limits.
func New(eng *engine.Engine, jr *journal.Journal) *Server { return NewWithLimits(eng, jr, Limits{}) }

// NewWithLimits is New with explicit limits.
func NewWithLimits(eng *engine.Engine, jr *journal.Journal, l Limits) *Server {
	if l.MaxReportStreams <= 0 {
		l.MaxReportStreams = DefaultMaxReportStreams
	}
	if l.ReportBufferBytes <= 0 {
		l.ReportBufferBytes = DefaultReportBufferBytes
	}
	return &Server{eng: eng, jr: jr, lim: l}
}

func withDetails(c codes.Code, msg string, details ...proto.Message) error {
	st := status.New(c, msg)
	for _, d := range details {
		if st2, err := st.WithDetails(protoadapt.MessageV1Of(d)); err == nil {
			st = st2
		}
	}
	return st.Err()
}

func invalid(e *engine.InvalidError) error {
	br := &errdetails.BadRequest{}
	for _, v := range e.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	return withDetails(codes.InvalidArgument, e.Error(), br)
}

// toStatus is the one place engine errors become gRPC codes; internals never leak.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	info := func(reason string) *errdetails.ErrorInfo {
		return &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain}
	}
	var inv *engine.InvalidError
	var many *engine.TooManyDenialsError
	switch {
	case errors.As(err, &inv):
		return invalid(inv)
	case errors.As(err, &many):
		i := info("TOO_MANY_DENIALS")
		i.Metadata = map[string]string{"risk_reason": many.Denial.Reason.String(), "risk_message": many.Denial.Message,
			"max_count": strconv.FormatUint(uint64(many.Limit.MaxCount), 10), "window_ms": strconv.FormatUint(uint64(many.Limit.WindowMS), 10)}
		return withDetails(codes.ResourceExhausted, many.Error(), i, &errdetails.RetryInfo{RetryDelay: durationpb.New(many.RetryAfter)})
	case errors.Is(err, engine.ErrAlreadyExists):
		return withDetails(codes.AlreadyExists, err.Error(), info("CLIENT_ORDER_ID_REUSED"))
	case errors.Is(err, engine.ErrNotFound):
		return withDetails(codes.NotFound, err.Error(), info("ORDER_NOT_FOUND"))
	case errors.Is(err, engine.ErrNotModifiable):
		return withDetails(codes.FailedPrecondition, err.Error(), info("ORDER_NOT_MODIFIABLE"))
	case errors.Is(err, engine.ErrNoPosition):
		return withDetails(codes.FailedPrecondition, err.Error(), info("NO_POSITION"))
	case errors.Is(err, engine.ErrNotCancelable):
		return withDetails(codes.FailedPrecondition, err.Error(), info("ORDER_NOT_WORKING"))
	case errors.Is(err, engine.ErrNotReconciled):
		return withDetails(codes.FailedPrecondition, "trading cannot leave HALTED before reconciliation with the venue converges", info("NOT_RECONCILED"))
	case errors.Is(err, engine.ErrInvalidState):
		return withDetails(codes.InvalidArgument, err.Error(), info("INVALID_TRADING_STATE"))
	case errors.Is(err, engine.ErrJournal):
		return withDetails(codes.Unavailable, "the journal cannot write; nothing new is accepted", info("JOURNAL_UNAVAILABLE"))
	case errors.Is(err, engine.ErrShuttingDown):
		return withDetails(codes.Unavailable, "the service is shutting down", info("SHUTTING_DOWN"))
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	return status.Error(codes.Internal, "internal error")
}

// SubmitOrder implements ExecutionService.
func (s *Server) SubmitOrder(ctx context.Context, req *execv1.SubmitOrderRequest) (*execv1.SubmitOrderResponse, error) {
	rreq, bad := engine.Validate(req, s.eng.Instrument, s.eng.Now())
	if bad != nil {
		// An exact repeat of a known order stays idempotent even if, say, its GTD expiry has passed.
		if o, err := s.eng.Get(ctx, req.GetClientOrderId()); err == nil && engine.ValidClientOrderID(req.GetClientOrderId()) {
			res, err := s.eng.Submit(ctx, req, &risk.Request{ClientOrderID: req.GetClientOrderId()}, nil)
			if err == nil && res.Duplicate {
				return &execv1.SubmitOrderResponse{Order: o, Duplicate: true}, nil
			}
			if err != nil {
				return nil, toStatus(err)
			}
		}
		return nil, invalid(bad)
	}
	res, err := s.eng.Submit(ctx, req, rreq, nil)
	if err != nil {
		return nil, toStatus(err)
	}
	return &execv1.SubmitOrderResponse{Order: res.Order, Duplicate: res.Duplicate}, nil
}

func checkID(id string) error {
	if !engine.ValidClientOrderID(id) {
		return invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "client_order_id", Description: fmt.Sprintf("%q must be 1-31 characters of [A-Za-z0-9_.:-]", id)}}})
	}
	return nil
}

// CancelOrder implements ExecutionService.
func (s *Server) CancelOrder(ctx context.Context, req *execv1.CancelOrderRequest) (*execv1.CancelOrderResponse, error) {
	if err := checkID(req.GetClientOrderId()); err != nil {
		return nil, err
	}
	o, err := s.eng.Cancel(ctx, req.GetClientOrderId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &execv1.CancelOrderResponse{Order: o}, nil
}

// ModifyOrder implements ExecutionService.
func (s *Server) ModifyOrder(ctx context.Context, req *execv1.ModifyOrderRequest) (*execv1.ModifyOrderResponse, error) {
	if err := checkID(req.GetClientOrderId()); err != nil {
		return nil, err
	}
	res, err := s.eng.Modify(ctx, req)
	if err != nil {
		return nil, modifyStatus(err)
	}
	return &execv1.ModifyOrderResponse{Order: res.Order, Denial: riskDenial(res.Denial)}, nil
}

// ModifyPosition implements ExecutionService.
func (s *Server) ModifyPosition(ctx context.Context, req *execv1.ModifyPositionRequest) (*execv1.ModifyPositionResponse, error) {
	res, err := s.eng.ModifyPosition(ctx, req)
	if err != nil {
		return nil, modifyStatus(err)
	}
	return &execv1.ModifyPositionResponse{Position: res.Position, Denial: riskDenial(res.Denial)}, nil
}

// modifyStatus maps a modify's engine error: an invalid request with its field details, else the
// shared mapping.
func modifyStatus(err error) error {
	var bad *engine.InvalidError
	if errors.As(err, &bad) {
		return invalid(bad)
	}
	return toStatus(err)
}

// riskDenial is a pre-trade risk denial as the API returns it in a response (nil: none).
func riskDenial(d *risk.Denial) *execv1.RiskDenial {
	if d == nil {
		return nil
	}
	return &execv1.RiskDenial{Reason: execv1.RiskDenyReason(d.Reason), Message: d.Message}
}

// CancelAll implements ExecutionService.
func (s *Server) CancelAll(ctx context.Context, req *execv1.CancelAllRequest) (*execv1.CancelAllResponse, error) {
	if sym := req.GetSymbol(); sym != "" {
		if _, ok := s.eng.Instrument(sym); !ok {
			return nil, invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "symbol", Description: fmt.Sprintf("unknown symbol %q", sym)}}})
		}
	}
	ids, err := s.eng.CancelAll(ctx, req.GetSymbol())
	if err != nil {
		return nil, toStatus(err)
	}
	return &execv1.CancelAllResponse{ClientOrderIds: ids}, nil
}

// GetOrder implements ExecutionService.
func (s *Server) GetOrder(ctx context.Context, req *execv1.GetOrderRequest) (*execv1.GetOrderResponse, error) {
	if err := checkID(req.GetClientOrderId()); err != nil {
		return nil, err
	}
	o, err := s.eng.Get(ctx, req.GetClientOrderId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &execv1.GetOrderResponse{Order: o}, nil
}

// ListOrders implements ExecutionService.
func (s *Server) ListOrders(ctx context.Context, req *execv1.ListOrdersRequest) (*execv1.ListOrdersResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	if size > 1000 {
		return nil, invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "page_size", Description: fmt.Sprintf("%d is above 1000", size)}}})
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "page_token", Description: "not a token this service issued"}}})
		}
		offset = n
	}
	var sts []fsm.Status
	for _, st := range req.GetStatuses() {
		if st <= 0 || st > execv1.OrderStatus_ORDER_STATUS_FILLED {
			return nil, invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "statuses", Description: fmt.Sprintf("unknown status %d", st)}}})
		}
		sts = append(sts, fsm.Status(st))
	}
	orders, next := s.eng.List(req.GetSymbol(), sts, req.GetOpenOnly(), offset, size)
	resp := &execv1.ListOrdersResponse{Orders: orders}
	if next >= 0 {
		resp.NextPageToken = strconv.Itoa(next)
	}
	return resp, nil
}

// ListPositions implements ExecutionService.
func (s *Server) ListPositions(ctx context.Context, req *execv1.ListPositionsRequest) (*execv1.ListPositionsResponse, error) {
	return &execv1.ListPositionsResponse{Positions: s.eng.Positions(req.GetSymbol(), req.GetIncludeFlat())}, nil
}

// StreamExecutionReports implements ExecutionService: replay from the journal, then live reports,
// with no gap and no repeat between the two (the live subscription starts before the replay).
func (s *Server) StreamExecutionReports(req *execv1.StreamExecutionReportsRequest, stream grpc.ServerStreamingServer[execv1.StreamExecutionReportsResponse]) error {
	ctx := stream.Context()
	if n := s.streams.Add(1); n > int64(s.lim.MaxReportStreams) {
		s.streams.Add(-1)
		if m := s.lim.Metrics; m != nil {
			m.ReportStreamsRefused.Inc()
		}
		return withDetails(codes.ResourceExhausted, fmt.Sprintf("%d report streams are open, the most this service serves", s.lim.MaxReportStreams),
			&errdetails.ErrorInfo{Reason: "TOO_MANY_REPORT_STREAMS", Domain: errorDomain})
	}
	if m := s.lim.Metrics; m != nil {
		m.ReportStreams.Inc()
	}
	defer func() {
		s.streams.Add(-1)
		if m := s.lim.Metrics; m != nil {
			m.ReportStreams.Dec()
		}
	}()
	symbols := map[string]bool{}
	for _, sym := range req.GetSymbols() {
		symbols[sym] = true
	}
	sub := s.jr.SubscribeBytes(reportBufferEntries, s.lim.ReportBufferBytes)
	defer sub.Close()
	live := sub.C()
	last := req.GetAfterSequence()
	send := func(e journal.Entry) error {
		if e.Kind != journal.KindReport || e.Seq <= last {
			return nil
		}
		last = e.Seq
		rep := &execv1.ExecutionReport{}
		if err := proto.Unmarshal(e.Payload, rep); err != nil {
			return status.Errorf(codes.DataLoss, "journal entry %d: %v", e.Seq, err)
		}
		rep.Sequence = e.Seq
		if len(symbols) > 0 && !symbols[rep.GetOrder().GetSymbol()] && !symbols[rep.GetPosition().GetSymbol()] {
			return nil
		}
		return stream.Send(&execv1.StreamExecutionReportsResponse{Report: rep})
	}
	if last != math.MaxUint64 {
		dayStart := time.UnixMicro(s.eng.Now()).UTC().Truncate(24 * time.Hour).UnixMicro()
		fromDay := last == 0
		err := s.jr.Read(ctx, last, 0, func(e journal.Entry) error {
			if fromDay && e.TimeUS < dayStart {
				return nil
			}
			return send(e)
		})
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return err
			}
			return status.Errorf(codes.Unavailable, "journal replay: %v", err)
		}
	} else {
		last = s.jr.LastSeq()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-live:
			if !ok {
				if m := s.lim.Metrics; m != nil {
					m.ReportStreamsCut.Inc()
				}
				return status.Errorf(codes.ResourceExhausted, "the stream fell behind; resume with after_sequence=%d", last)
			}
			err := send(e)
			sub.Done(e)
			if err != nil {
				return err
			}
		}
	}
}

// SetTradingState implements ExecutionService; with cancel_all (and flatten) it is the kill switch.
func (s *Server) SetTradingState(ctx context.Context, req *execv1.SetTradingStateRequest) (*execv1.SetTradingStateResponse, error) {
	st := req.GetState()
	if st < execv1.TradingState_TRADING_STATE_ACTIVE || st > execv1.TradingState_TRADING_STATE_HALTED {
		return nil, invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "state", Description: fmt.Sprintf("must be ACTIVE, REDUCING or HALTED, got %v", st)}}})
	}
	if req.GetFlatten() && !req.GetCancelAll() {
		return nil, invalid(&engine.InvalidError{Violations: []engine.Violation{{Field: "flatten", Description: "flatten needs cancel_all, so no working order re-opens a position"}}})
	}
	prev, err := s.eng.SetTradingState(ctx, risk.State(st), req.GetReason())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &execv1.SetTradingStateResponse{Previous: execv1.TradingState(prev), Current: st}
	if req.GetCancelAll() {
		ids, err := s.eng.CancelAll(ctx, "")
		if err != nil {
			return nil, toStatus(err)
		}
		resp.CanceledClientOrderIds = ids
	}
	if req.GetFlatten() {
		ids, err := s.eng.Flatten(ctx, req.GetReason())
		resp.FlattenClientOrderIds = ids
		if err != nil {
			return resp, toStatus(err)
		}
	}
	return resp, nil
}

// GetRiskLimits implements ExecutionService.
func (s *Server) GetRiskLimits(ctx context.Context, req *execv1.GetRiskLimitsRequest) (*execv1.GetRiskLimitsResponse, error) {
	l := s.eng.Limits()
	st, _ := s.eng.State()
	return &execv1.GetRiskLimitsResponse{TradingState: execv1.TradingState(st), Limits: &execv1.RiskLimits{
		AllowedSymbols: l.AllowedSymbols, MaxOrderQuantity: l.MaxOrderQuantity.Proto(), MaxOrderNotional: l.MaxOrderNotional.Proto(),
		MaxPositionQuantity: l.MaxPositionQuantity.Proto(), MaxGrossExposure: l.MaxGrossExposure.Proto(), MaxOpenOrders: l.MaxOpenOrders,
		PriceCollarBps: l.PriceCollarBps, MaxQuoteAgeMs: l.MaxQuoteAgeMS,
		SubmitRate:              &execv1.RateLimit{MaxCount: l.SubmitRate.MaxCount, WindowMs: l.SubmitRate.WindowMS},
		MessageRate:             &execv1.RateLimit{MaxCount: l.MessageRate.MaxCount, WindowMs: l.MessageRate.WindowMS},
		DenialRate:              &execv1.RateLimit{MaxCount: l.DenialRate.MaxCount, WindowMs: l.DenialRate.WindowMS},
		DuplicateIntentWindowMs: l.DuplicateIntentWindowMS, MaxDailyLoss: l.MaxDailyLoss.Proto(),
		DailyLossState: execv1.TradingState(l.DailyLossState), MaxDrawdown: l.MaxDrawdown.Proto(),
		DrawdownState: execv1.TradingState(l.DrawdownState), MinFreeMargin: l.MinFreeMargin.Proto(),
	}}, nil
}
