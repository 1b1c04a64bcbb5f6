package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestSubjectsOverlapFollowsNATSWildcards(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"kairos.md.>", "kairos.md.EURUSD", true},
		{"kairos.md.>", "kairos.md", false},
		{"kairos.md.>", "kairos.bar.>", false},
		{"kairos.bar.*.EURUSD", "kairos.bar.M1.*", true},
		{"kairos.bar.*.EURUSD", "kairos.bar.M1.GBPUSD", false},
		{"kairos.signal.EURUSD", "kairos.signal.EURUSD", true},
		{"kairos.*", "kairos.md.EURUSD", false},
		{">", "anything.at.all", true},
		{"kairos.pred.>", "kairos.pred.>", true},
	}
	for _, c := range cases {
		if got := subjectsOverlap(c.a, c.b); got != c.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := subjectsOverlap(c.b, c.a); got != c.want {
			t.Errorf("subjectsOverlap(%q, %q) = %v, want %v (symmetry)", c.b, c.a, got, c.want)
		}
	}
}

func TestCommittedDefinitionsLoad(t *testing.T) {
	streams, err := loadDir("../../../../deploy/nats/streams")
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) < 4 {
		t.Fatalf("want the md, bars, pred and signals streams, got %d", len(streams))
	}
}

func TestRetryableTellsAWaitFromARefusal(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"an attempt's deadline (an unanswered request)", fmt.Errorf("create X: %w", context.DeadlineExceeded), true},
		{"a request timeout", fmt.Errorf("look up X: %w", nats.ErrTimeout), true},
		{"no JetStream responder yet", fmt.Errorf("create X: %w", nats.ErrNoResponders), true},
		{"JetStream not enabled yet", jetstream.ErrJetStreamNotEnabled, true},
		{"no meta leader (503)", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"too few known peers for the replicas", &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "insufficient resources"}, true},
		{"the store not made while JetStream enables", &jetstream.APIError{Code: 500, ErrorCode: 10049, Description: "error creating store for stream"}, true},
		{"a configuration the server refuses", &jetstream.APIError{Code: 400, ErrorCode: 10052, Description: "subjects overlap with an existing stream"}, false},
		{"a name in use", jetstream.ErrStreamNameAlreadyInUse, false},
		{"anything else", errors.New("permission denied"), false},
	}
	for _, c := range cases {
		if got := retryable(c.err); got != c.want {
			t.Errorf("%s: retryable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// startServer runs an embedded nats-server on a free loopback port, without JetStream.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestApplyWaitsForJetStreamThatIsNotReadyYetAndConverges(t *testing.T) {
	s := startServer(t)
	// JetStream comes up 1.5 s after the tool started: its first attempts find no responder.
	timer := time.AfterFunc(1500*time.Millisecond, func() {
		if err := s.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
			t.Errorf("enable JetStream: %v", err)
		}
	})
	defer timer.Stop()
	dir := "../../../../deploy/nats/streams"
	var out, errOut bytes.Buffer
	if rc := run([]string{"-server", s.ClientURL(), "-dir", dir, "-timeout", "20s", "-attempt-timeout", "1s"}, &out, &errOut); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, errOut.String())
	}
	if !strings.Contains(errOut.String(), "(retrying)") {
		t.Errorf("want the retries reported, stderr:\n%s", errOut.String())
	}
	streams, err := loadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range streams {
		if !strings.Contains(out.String(), sc.Name+": created") {
			t.Errorf("%s not created, stdout:\n%s", sc.Name, out.String())
		}
	}
	// Applying again (as a retry after a lost reply does) changes nothing.
	out.Reset()
	errOut.Reset()
	if rc := run([]string{"-server", s.ClientURL(), "-dir", dir, "-timeout", "20s"}, &out, &errOut); rc != 0 {
		t.Fatalf("second apply: rc %d, stderr:\n%s", rc, errOut.String())
	}
	if got := strings.Count(out.String(), ": unchanged"); got != len(streams) {
		t.Errorf("second apply: want %d unchanged, stdout:\n%s", len(streams), out.String())
	}
}

func TestApplyGivesUpAtTheDeadlineWhenJetStreamNeverComes(t *testing.T) {
	s := startServer(t)
	var out, errOut bytes.Buffer
	start := time.Now()
	rc := run([]string{"-server", s.ClientURL(), "-dir", "../../../../deploy/nats/streams", "-timeout", "2s", "-attempt-timeout", "500ms"}, &out, &errOut)
	if rc != 1 {
		t.Fatalf("rc %d, want 1; stderr:\n%s", rc, errOut.String())
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("took %s with a 2 s deadline", el)
	}
	if !strings.Contains(errOut.String(), "no responders") {
		t.Errorf("want the last error named, stderr:\n%s", errOut.String())
	}
}

func TestAnUnansweredAttemptIsRetriedOnANewConnection(t *testing.T) {
	s := startServer(t)
	// The first JetStream API request finds a responder that never answers (as a reply lost while a
	// cluster forms); the responder then leaves and JetStream comes up.
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	swallowed := make(chan string, 1)
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		select {
		case swallowed <- m.Subject:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	go func() {
		select {
		case <-swallowed:
		case <-time.After(10 * time.Second):
			return
		}
		_ = sub.Unsubscribe()
		_ = nc.Flush()
		if err := s.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
			t.Errorf("enable JetStream: %v", err)
		}
	}()
	var out, errOut bytes.Buffer
	if rc := run([]string{"-server", s.ClientURL(), "-dir", "../../../../deploy/nats/streams", "-timeout", "20s", "-attempt-timeout", "1s"}, &out, &errOut); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, errOut.String())
	}
	if !strings.Contains(errOut.String(), "deadline exceeded (retrying)") {
		t.Errorf("want the unanswered attempt reported, stderr:\n%s", errOut.String())
	}
	v, err := s.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The responder's connection plus the tool's first and second.
	if v.TotalConnections < 3 {
		t.Errorf("want the tool to dial again after the unanswered attempt: %d connections in all", v.TotalConnections)
	}
}
