package collector

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// historyRequest waits for the collector to send a HistoryRequest on the bridge connection.
func (b *bridgeConn) historyRequest(t *testing.T) (*bridgev1.HistoryRequest, uint64) {
	t.Helper()
	var (
		r   *bridgev1.HistoryRequest
		seq uint64
	)
	testkit.WaitFor(t, "a HistoryRequest", 30*time.Second, func() bool {
		for _, f := range b.received() {
			if f.GetHistoryRequest() != nil {
				r, seq = f.GetHistoryRequest(), f.Sequence
			}
		}
		return r != nil
	})
	return r, seq
}

// FetchHistory goes to the terminal that announced the symbol and streams its parts back in order,
// the verdict last; the parts never reach the live tick path.
func TestFetchHistory_AsksTheTerminalAndStreamsItsAnswer(t *testing.T) {
	svc := start(t, testConfig())
	b := dialBridge(t, svc.BridgeAddr())
	b.send(t, hello(9, 0))
	b.welcome(t)
	b.send(t, symbolInfo(1))
	client := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr()))
	testkit.WaitFor(t, "EURUSD announced", 30*time.Second, func() bool {
		ls, err := client.ListSymbols(testkit.Context(t, 20*time.Second), &collectorv1.ListSymbolsRequest{})
		return err == nil && len(ls.GetSymbols()) == 1
	})
	st, err := client.FetchHistory(testkit.Context(t, 20*time.Second), &collectorv1.FetchHistoryRequest{Symbol: "EURUSD", Kind: mdv1.HistoryKind_HISTORY_KIND_TICKS,
		FromMsc: 1577836800000, ToMsc: 1577923200000})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := b.historyRequest(t)
	if req.GetSymbol() != "EURUSD" || req.GetFromMsc() != 1577836800000 || req.GetRequestId() == 0 {
		t.Fatalf("request %v", req)
	}
	id := req.GetRequestId()
	b.send(t,
		&bridgev1.Frame{Sequence: 2, Body: &bridgev1.Frame_HistoryData{HistoryData: &bridgev1.HistoryData{RequestId: id, Part: 0,
			Status: mdv1.HistoryStatus_HISTORY_STATUS_MORE, Ticks: &mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1577880000000}, Bid: []float64{1.12}, Ask: []float64{1.1201}}}}},
		&bridgev1.Frame{Sequence: 3, Body: &bridgev1.Frame_HistoryData{HistoryData: &bridgev1.HistoryData{RequestId: id + 100, Part: 0,
			Status: mdv1.HistoryStatus_HISTORY_STATUS_DONE}}}, // nobody asked: dropped
		&bridgev1.Frame{Sequence: 4, Body: &bridgev1.Frame_HistoryData{HistoryData: &bridgev1.HistoryData{RequestId: id, Part: 1,
			Status: mdv1.HistoryStatus_HISTORY_STATUS_DONE, Total: 1}}})

	first, err := st.Recv()
	if err != nil || first.GetPart() != 0 || len(first.GetTicks().GetTimeMsc()) != 1 {
		t.Fatalf("first part %v %v", first, err)
	}
	last, err := st.Recv()
	if err != nil || last.GetStatus() != mdv1.HistoryStatus_HISTORY_STATUS_DONE || last.GetTotal() != 1 || last.GetTerminal() == "" {
		t.Fatalf("last part %v %v", last, err)
	}
	if _, err := st.Recv(); err == nil {
		t.Fatal("the stream goes on after the verdict")
	}
	testkit.WaitFor(t, "the history frames acknowledged", 30*time.Second, func() bool { return b.maxAck() >= 4 })
}

// A terminal whose connection drops mid-chunk ends the call UNAVAILABLE naming it; without a
// terminal the call is FAILED_PRECONDITION; a range longer than 31 days is refused.
func TestFetchHistory_WithoutAnAnswer(t *testing.T) {
	svc := start(t, testConfig())
	client := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr()))
	req := &collectorv1.FetchHistoryRequest{Symbol: "EURUSD", Kind: mdv1.HistoryKind_HISTORY_KIND_TICKS, FromMsc: 1577836800000, ToMsc: 1577923200000}
	recv := func() error {
		st, err := client.FetchHistory(testkit.Context(t, 20*time.Second), req)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	if err := recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("no terminal: %v", err)
	}
	long := proto.Clone(req).(*collectorv1.FetchHistoryRequest)
	long.ToMsc = long.FromMsc + 32*86_400_000
	if st, err := client.FetchHistory(testkit.Context(t, 20*time.Second), long); err == nil {
		if _, err = st.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("32 days: %v", err)
		}
	}

	b := dialBridge(t, svc.BridgeAddr())
	b.send(t, hello(10, 0))
	b.welcome(t)
	done := make(chan error, 1)
	go func() { done <- recv() }()
	b.historyRequest(t)
	b.nc.Close()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("connection lost: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not end when the terminal's connection dropped")
	}
}
