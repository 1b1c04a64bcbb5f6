package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/execution/policy"
)

// Execution subscribes, flushes, then reports ready (app.go). With nats.go the flush is a fence: SUB
// and PING share one buffer, so the server has the subscription before it answers PONG and a signal
// published right after is delivered. (nats-py's flush is not: its PING overtakes the queued SUB,
// docs/operations.md "NATS: subscribe, then fence".) A fresh subscriber per try, one signal each.
func TestASignalPublishedRightAfterSubscribeAndFlushIsDelivered(t *testing.T) {
	ns := testutil.NATS(t)
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range 100 {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		ch, _, err := policy.Subscribe(nc)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("signal %d", i)
		if err := pub.Publish("kairos.signal.EURUSD", []byte(want)); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		select {
		case msg := <-ch:
			if string(msg.Data) != want {
				t.Fatalf("try %d: got %q, want %q", i, msg.Data, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("try %d: the signal published right after the subscriber's flush never arrived", i)
		}
		nc.Close()
	}
}
