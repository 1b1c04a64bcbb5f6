package collector

import (
	"context"
	"fmt"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/bridge"
)

// terminalHistory is the inference link's warm-up source (ADR 0105): it asks the terminal that
// announced the symbol for a range of bars through the bridge's History router.
type terminalHistory struct{ h *bridge.History }

// Bars implements predictlink.HistorySource: every part of the terminal's answer, gathered (at most
// bridge.MaxHistoryParts parts of 64 bars); EMPTY is no bars, ERROR an error, PARTIAL what came.
func (t terminalHistory) Bars(ctx context.Context, symbol string, periodS uint32, fromMsc, toMsc int64) ([]*mdv1.Bar, error) {
	f, err := t.h.Fetch(ctx, &bridgev1.HistoryRequest{Symbol: symbol, Kind: mdv1.HistoryKind_HISTORY_KIND_BARS, PeriodS: periodS,
		FromMsc: fromMsc, ToMsc: toMsc})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*mdv1.Bar
	for {
		select {
		case d := <-f.Parts:
			out = append(out, d.GetBars()...)
			switch d.GetStatus() {
			case mdv1.HistoryStatus_HISTORY_STATUS_MORE:
			case mdv1.HistoryStatus_HISTORY_STATUS_DONE, mdv1.HistoryStatus_HISTORY_STATUS_PARTIAL:
				return out, nil
			case mdv1.HistoryStatus_HISTORY_STATUS_EMPTY:
				return nil, nil
			default:
				return nil, fmt.Errorf("the terminal %s could not copy the bars: %s %s", f.Terminal, d.GetStatus(), d.GetMessage())
			}
		case <-f.Done():
			return nil, f.Err()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
