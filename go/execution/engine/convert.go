package engine

import (
	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
)

// OrderProto converts an order to its wire form.
func OrderProto(o *fsm.Order) *execv1.Order {
	p := &execv1.Order{
		ClientOrderId: o.ClientOrderID, VenueOrderId: o.VenueOrderID, Symbol: o.Symbol,
		Side: execv1.OrderSide(o.Side), Type: execv1.OrderType(o.Type), TimeInForce: execv1.TimeInForce(o.TIF),
		Quantity: o.Quantity.Proto(), Price: o.Price.Proto(), TriggerPrice: o.TriggerPrice.Proto(),
		Status: execv1.OrderStatus(o.Status), FilledQuantity: o.FilledQty.Proto(), AvgFillPrice: o.AvgFillPrice.Proto(),
		ReduceOnly: o.ReduceOnly, StrategyId: o.StrategyID, ModelName: o.ModelName, ModelVersion: o.ModelVersion,
		Venue: o.Venue, RejectReason: o.RejectReason, ExpireTimeUs: o.ExpireTimeUS, CreatedTimeUs: o.CreatedUS, UpdatedTimeUs: o.UpdatedUS,
	}
	if !o.StopLoss.IsZero() {
		p.StopLoss = o.StopLoss.Proto()
	}
	if !o.TakeProfit.IsZero() {
		p.TakeProfit = o.TakeProfit.Proto()
	}
	if o.Status == fsm.Denied {
		p.Denial = &execv1.RiskDenial{Reason: execv1.RiskDenyReason(o.DenyReason), Message: o.DenyMessage}
	}
	return p
}

func dec(p *typesv1.Decimal) decimal.D {
	d, err := decimal.FromProto(p)
	if err != nil {
		return decimal.Zero
	}
	return d
}

// orderFromProto rebuilds an order from a journaled report (replay).
func orderFromProto(p *execv1.Order) *fsm.Order {
	o := &fsm.Order{
		ClientOrderID: p.GetClientOrderId(), VenueOrderID: p.GetVenueOrderId(), Symbol: p.GetSymbol(),
		Side: fsm.Side(p.GetSide()), Type: fsm.Type(p.GetType()), TIF: fsm.TimeInForce(p.GetTimeInForce()),
		Quantity: dec(p.GetQuantity()), Price: dec(p.GetPrice()), TriggerPrice: dec(p.GetTriggerPrice()),
		ReduceOnly: p.GetReduceOnly(), StrategyID: p.GetStrategyId(), ModelName: p.GetModelName(), ModelVersion: p.GetModelVersion(),
		Venue: p.GetVenue(), ExpireTimeUS: p.GetExpireTimeUs(), CreatedUS: p.GetCreatedTimeUs(),
	}
	updateFromProto(o, p)
	return o
}

func updateFromProto(o *fsm.Order, p *execv1.Order) {
	o.Status = fsm.Status(p.GetStatus())
	o.VenueOrderID = p.GetVenueOrderId()
	// A modification changes these; every report carries them.
	o.Quantity, o.Price, o.TriggerPrice = dec(p.GetQuantity()), dec(p.GetPrice()), dec(p.GetTriggerPrice())
	o.StopLoss, o.TakeProfit = dec(p.GetStopLoss()), dec(p.GetTakeProfit())
	o.FilledQty = dec(p.GetFilledQuantity())
	o.AvgFillPrice = dec(p.GetAvgFillPrice())
	o.RejectReason = p.GetRejectReason()
	o.UpdatedUS = p.GetUpdatedTimeUs()
	if d := p.GetDenial(); d != nil {
		o.DenyReason, o.DenyMessage = uint8(d.GetReason()), d.GetMessage()
	}
}

func fillProto(o *fsm.Order, f fsm.Fill) *execv1.Fill {
	return &execv1.Fill{
		TradeId: f.TradeID, ClientOrderId: o.ClientOrderID, VenueOrderId: o.VenueOrderID, Symbol: o.Symbol,
		Side: execv1.OrderSide(o.Side), Quantity: f.Quantity.Proto(), Price: f.Price.Proto(), Commission: f.Commission.Proto(),
		CommissionCurrency: f.CommissionCcy, LiquiditySide: execv1.LiquiditySide(f.Liquidity), Venue: o.Venue, TimeUs: f.TimeUS,
	}
}

// PositionProto converts a position.
func PositionProto(p portfolio.Position, unrealized decimal.D, ccy, venue string) *execv1.Position {
	return &execv1.Position{
		Symbol: p.Symbol, NetQuantity: p.Net.Proto(), AvgPrice: p.AvgPrice.Proto(), RealizedPnl: p.Realized.Proto(),
		UnrealizedPnl: unrealized.Proto(), Currency: ccy, Venue: venue, OpenedTimeUs: p.OpenedUS, UpdatedTimeUs: p.UpdatedUS,
	}
}

// protected adds a position's protection to its wire form.
func protected(p *execv1.Position, pr protection) *execv1.Position {
	if !pr.sl.IsZero() {
		p.StopLoss = pr.sl.Proto()
	}
	if !pr.tp.IsZero() {
		p.TakeProfit = pr.tp.Proto()
	}
	return p
}
