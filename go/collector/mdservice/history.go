package mdservice

import (
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/bridge"
)

// MaxHistoryRange is the longest range one FetchHistory call may ask for; clients chunk longer ones.
const MaxHistoryRange = 31 * 24 * time.Hour

// HistoryPartTimeout is how long FetchHistory waits for the terminal's next part before it gives
// up on the chunk (CopyTicksRange of a day can take the terminal a while to download).
var HistoryPartTimeout = 2 * time.Minute

// WithHistory lets FetchHistory ask the connected terminals (the bridge's History router).
func (s *Service) WithHistory(h *bridge.History) *Service {
	s.hist = h
	return s
}

// FetchHistory implements MarketDataService: one range, asked of a terminal, streamed back part by
// part; the last part carries the terminal's verdict.
func (s *Service) FetchHistory(req *collectorv1.FetchHistoryRequest, stream grpc.ServerStreamingServer[collectorv1.FetchHistoryResponse]) error {
	switch {
	case req.GetSymbol() == "" || len(req.GetSymbol()) > 31:
		return status.Error(codes.InvalidArgument, "symbol: 1-31 bytes")
	case req.GetKind() != mdv1.HistoryKind_HISTORY_KIND_TICKS && req.GetKind() != mdv1.HistoryKind_HISTORY_KIND_BARS:
		return status.Error(codes.InvalidArgument, "kind: TICKS or BARS")
	case req.GetKind() == mdv1.HistoryKind_HISTORY_KIND_BARS && req.GetPeriodS() == 0:
		return status.Error(codes.InvalidArgument, "period_s: bars need a period (60 for M1)")
	case req.GetFromMsc() <= 0 || req.GetToMsc() <= req.GetFromMsc():
		return status.Error(codes.InvalidArgument, "from_msc must be positive and before to_msc")
	case time.Duration(req.GetToMsc()-req.GetFromMsc())*time.Millisecond > MaxHistoryRange:
		return status.Errorf(codes.InvalidArgument, "the range is longer than %v: ask for it in chunks", MaxHistoryRange)
	case s.hist == nil:
		return status.Error(codes.Unimplemented, "this collector has no bridge listener")
	}
	f, err := s.hist.Fetch(stream.Context(), &bridgev1.HistoryRequest{Symbol: req.GetSymbol(), Kind: req.GetKind(), PeriodS: req.GetPeriodS(),
		FromMsc: req.GetFromMsc(), ToMsc: req.GetToMsc()})
	switch {
	case errors.Is(err, bridge.ErrNoTerminal):
		return status.Error(codes.FailedPrecondition, "no MT5 terminal is connected to the collector: start the EA (docs/mt5.md)")
	case err != nil:
		return status.Errorf(codes.Unavailable, "asking the terminal: %v", err)
	}
	defer f.Close()
	timer := time.NewTimer(HistoryPartTimeout)
	defer timer.Stop()
	for {
		select {
		case d := <-f.Parts:
			out := &collectorv1.FetchHistoryResponse{Part: d.GetPart(), Status: d.GetStatus(), Ticks: d.GetTicks(), Bars: d.GetBars(),
				Total: d.GetTotal(), Message: d.GetMessage(), FirstAvailableMsc: d.GetFirstAvailableMsc()}
			last := d.GetStatus() != mdv1.HistoryStatus_HISTORY_STATUS_MORE
			if last {
				out.Terminal = f.Terminal
			}
			if err := stream.Send(out); err != nil {
				return err
			}
			if last {
				return nil
			}
			timer.Reset(HistoryPartTimeout)
		case <-f.Done():
			return status.Errorf(codes.Unavailable, "%v (%s)", f.Err(), f.Terminal)
		case <-timer.C:
			return status.Errorf(codes.DeadlineExceeded, "the terminal %s sent nothing for %v", f.Terminal, HistoryPartTimeout)
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-s.stop:
			return status.Error(codes.Unavailable, "collector shutting down")
		}
	}
}
