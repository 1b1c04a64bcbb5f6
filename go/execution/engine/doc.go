// Package engine is the execution engine: it takes order intents (from gRPC or the signal policy),
// runs them through pre-trade risk and the order state machine, journals every step, hands
// commands to the venue and applies what the venue reports. One mutex serialises all order state;
// journal durability is awaited outside it, so concurrent submitters share group commits.
//
// One concern per file:
//
//	engine.go        the Engine, its options, errors and lifecycle (New, Close); state gauges
//	validate.go      a SubmitOrderRequest checked against the contract and the instrument
//	submit.go        Submit, SubmitIntent: risk → state machine → journal → venue
//	events.go        venue events (accepted, rejected, filled, ...) → state machine, book, journal
//	cancel.go        Cancel, CancelAll
//	modify.go        Modify: a working order through risk, PENDING_UPDATE and the venue
//	protect.go       positions' stop loss and take profit: ModifyPosition, after fills, protective fills
//	tradingstate.go  SetTradingState and the kill switch's Flatten
//	quotes.go        OnQuote(s): quotes for risk and for a quote-driven venue
//	account.go       account snapshots and the loss breakers
//	queries.go       Get, List, Positions, State, OpenOrders, PositionState
//	pnl.go           the realized/unrealized P&L and equity gauges
//	journaling.go    engine steps encoded as journal entries; append under the lock, wait outside
//	replay.go        Replay: the state rebuilt from the journal at start
//	reconcile.go     Reconcile: the journal's state against the venue's, before trading resumes
//	convert.go       orders, fills and positions to and from their protobuf form
package engine
