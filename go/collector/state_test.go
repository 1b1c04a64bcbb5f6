package collector

import (
	"encoding/json"
	"github.com/kairos-mt5/kairos/go/testkit"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kairos-mt5/kairos/go/collector/ingest"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/collector/validate"
)

func TestStateFileSourceNamesMigrate(t *testing.T) {
	w := func(seq uint64) map[string]validate.State {
		return map[string]validate.State{"EURUSD": {LastSequence: seq}}
	}
	cases := []struct {
		name string
		in   state
		want map[string]map[string]validate.State
	}{
		{"a version-1 file names bridge sources in hexadecimal",
			state{Sessions: map[uint64]uint64{255: 9, 16: 4, 10: 3}, Pipeline: ingest.State{Sources: map[string]map[string]validate.State{
				"bridge:ff": w(1), "bridge:10": w(2), "bridge:a": w(3), "replay:x": w(4)}}},
			map[string]map[string]validate.State{"bridge:255": w(1), "bridge:16": w(2), "bridge:10": w(3), "replay:x": w(4)}},
		{"a version-2 file is left as it is",
			state{Version: stateVersion, Sessions: map[uint64]uint64{16: 4}, Pipeline: ingest.State{Sources: map[string]map[string]validate.State{
				"bridge:16": w(2)}}},
			map[string]map[string]validate.State{"bridge:16": w(2)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.in
			migrateSourceNames(&st)
			if !reflect.DeepEqual(st.Pipeline.Sources, tc.want) {
				t.Fatalf("sources %v, want %v", st.Pipeline.Sources, tc.want)
			}
		})
	}
}

func TestAVersion1StateFileKeepsTheSessionsWatermarks(t *testing.T) {
	cfg := testConfig()
	cfg.StateFile = filepath.Join(t.TempDir(), "state.json")
	batches := ticksdata.Batches("EURUSD", realTicks(t)[:200], 100, 1)
	// Written by a collector before bridgelink: session 26 (0x1a) processed frames up to 3, whose
	// ticks reached sequence 100.
	info, err := proto.Marshal(ticksdata.EURUSD())
	if err != nil {
		t.Fatal(err)
	}
	legacy := map[string]any{
		"sessions": map[string]uint64{"26": 3},
		"pipeline": map[string]any{"sources": map[string]any{"bridge:1a": map[string]validate.State{
			"EURUSD": {LastTimeMsc: batches[0].TimeMsc[99], LastSequence: 100, Info: info}}}},
	}
	data, err := json.Marshal(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.StateFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	svc := start(t, cfg)
	nats := subscribeNATS(t, svc.NATSURL())
	br := dialBridge(t, svc.BridgeAddr())
	br.send(t, hello(26, 0))
	if w := br.welcome(t); w.ResumeAfter != 3 {
		t.Fatalf("resume_after %d, want 3", w.ResumeAfter)
	}
	// The bridge resends the ticks of frame 3 renumbered (as after a crash), then new ones: the
	// restored watermark refuses the first as duplicates, without a SymbolInfo first.
	br.send(t, ticksFrame(4, batches[0]), ticksFrame(5, batches[1]))
	testkit.WaitFor(t, "ack 5", 5*time.Second, func() bool { return br.maxAck() == 5 })
	testkit.WaitFor(t, "the new ticks on NATS", 5*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == 100 })
	time.Sleep(50 * time.Millisecond)
	if n, _, _ := nats.snapshot(); n != 100 {
		t.Fatalf("%d ticks on NATS, want only the 100 new ones", n)
	}
}

func TestTheStateFileKeepsOnlyBoundedLiveSessions(t *testing.T) {
	cfg := testConfig()
	cfg.StateFile = filepath.Join(t.TempDir(), "state.json")
	cfg.BridgeMaxSessions = 2
	cfg.BridgeSessionTTL = time.Hour
	now := time.Now()
	// Four sessions: 1 idle for two hours (expired), 2 and 3 recent, 4 with no recorded activity
	// (a file from before: counts as active now). At most two may stay.
	src := func() map[string]validate.State { return map[string]validate.State{"EURUSD": {LastSequence: 7}} }
	old := state{Version: stateVersion,
		Sessions:    map[uint64]uint64{1: 10, 2: 20, 3: 30, 4: 40},
		SessionSeen: map[uint64]int64{1: now.Add(-2 * time.Hour).Unix(), 2: now.Add(-30 * time.Minute).Unix(), 3: now.Add(-10 * time.Minute).Unix()},
		Pipeline: ingest.State{Sources: map[string]map[string]validate.State{
			"bridge:1": src(), "bridge:2": src(), "bridge:3": src(), "bridge:4": src(), "publisher-a": src()}},
	}
	data, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.StateFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	svc := start(t, cfg)
	got := svc.Bridge.Sessions()
	if want := map[uint64]uint64{3: 30, 4: 40}; !reflect.DeepEqual(got, want) {
		t.Fatalf("sessions %v, want %v (1 expired, 2 the least recently active beyond the cap)", got, want)
	}
	svc.stop(t)
	data, err = os.ReadFile(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	var saved state
	if err := json.Unmarshal(data, &saved); err != nil {
		t.Fatal(err)
	}
	if len(saved.Sessions) != 2 || len(saved.SessionSeen) != 2 || saved.SessionSeen[3] != old.SessionSeen[3] {
		t.Fatalf("saved sessions %v, seen %v", saved.Sessions, saved.SessionSeen)
	}
	for _, gone := range []string{"bridge:1", "bridge:2"} {
		if _, ok := saved.Pipeline.Sources[gone]; ok {
			t.Fatalf("the evicted session's source %s is still in the state file", gone)
		}
	}
	for _, kept := range []string{"bridge:3", "bridge:4", "publisher-a"} {
		if _, ok := saved.Pipeline.Sources[kept]; !ok {
			t.Fatalf("source %s was dropped", kept)
		}
	}
}
