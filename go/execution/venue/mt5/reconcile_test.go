package mt5_test

import (
	"testing"
	"time"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
)

// positions is a PositionSnapshot frame holding one long EURUSD position of lots hundredths.
func positions(timeMsc int64, lots int64, complete bool) *bridgev1.Frame {
	return &bridgev1.Frame{Body: &bridgev1.Frame_Positions{Positions: &bridgev1.PositionSnapshot{TimeMsc: timeMsc, Complete: complete,
		Positions: []*bridgev1.Position{{Symbol: "EURUSD", Side: bridgev1.Side_SIDE_BUY, Volume: &typesv1.Decimal{Units: lots, Scale: 2}, PriceOpen: svctest.Dec("1.10000")}}}}}
}

func TestReconcile_AdoptsTheLatestPositionSnapshotOnly(t *testing.T) {
	cases := []struct {
		name   string
		frames []*bridgev1.Frame
	}{
		{"ANewerSnapshotReplacesAnUnfinishedOne", []*bridgev1.Frame{positions(1000, 10, false), positions(2000, 10, true)}},
		{"FramesOfAnOlderSnapshotAreDropped", []*bridgev1.Frame{positions(2000, 10, false), positions(1000, 10, false), positions(2000, 0, true)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			asked := make(chan struct{}, 1)
			// The terminal answers the snapshot command with no frames of its own: the test sends them.
			r.term.Before = func(cmd *bridgev1.OrderCommand) *bridgev1.OrderResult {
				if cmd.GetKind() != bridgev1.CommandKind_COMMAND_KIND_SNAPSHOT {
					return nil
				}
				select {
				case asked <- struct{}{}:
				default:
				}
				return &bridgev1.OrderResult{CommandId: cmd.GetCommandId(), Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT}
			}
			if _, err := r.peer.Connect(r.s.Ready.BridgeAddr); err != nil {
				t.Fatal(err)
			}
			select {
			case <-asked:
			case <-time.After(10 * time.Second):
				t.Fatal("no snapshot command")
			}

			for _, f := range c.frames {
				if err := r.peer.Send(f); err != nil {
					t.Fatal(err)
				}
			}
			r.waitState(t, execv1.TradingState_TRADING_STATE_ACTIVE, "1")

			pos, err := r.s.Client.ListPositions(svctest.Authed(t), &execv1.ListPositionsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(pos.GetPositions()) != 1 || !sameDec(pos.GetPositions()[0].GetNetQuantity(), 10, 2) {
				t.Fatalf("positions after reconciliation %v, want EURUSD 0.10 (the latest snapshot)", pos.GetPositions())
			}
		})
	}
}

// sameDec compares a wire decimal with units/10^scale.
func sameDec(d *typesv1.Decimal, units int64, scale uint32) bool {
	for d.GetScale() > scale && d.GetUnits()%10 == 0 {
		d = &typesv1.Decimal{Units: d.GetUnits() / 10, Scale: d.GetScale() - 1}
	}
	return d.GetUnits() == units && d.GetScale() == scale
}
