// Command kairos-streams creates or updates the Kairos JetStream streams from their definitions
// (deploy/nats/streams/*.json) on a NATS server or cluster, so compose, Kubernetes and tests apply
// the same files. With -check it only validates the files (no server), which `make lint` runs.
//
// A definition is the JetStream stream configuration in JSON (the server API's field names) with
// two readability changes: durations (max_age, duplicate_window) are Go duration strings ("24h"),
// and unknown fields are an error naming the file.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// config is the command's whole configuration; each field has a flag and an environment variable.
type config struct {
	Server       string        // NATS URL(s), comma-separated
	Dir          string        // folder of *.json stream definitions
	Replicas     int           // overrides num_replicas when > 0 (a 3-node cluster wants 3)
	Check        bool          // validate the definitions only
	Timeout      time.Duration // bound for connecting (the server may still be starting) and applying
	Attempt      time.Duration // bound for one JetStream API exchange; a lost or refused one is retried
	CAFile       string        // PEM roots for a TLS NATS server
	CertFile     string        // client certificate for NATS mutual TLS
	KeyFile      string        // client key for NATS mutual TLS
	Creds        string        // NATS credentials file (JWT + NKey); never printed
	PasswordFile string        // file holding user:password (Kairos identities); never printed
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("kairos-streams", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Server, "server", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS server URL(s), comma-separated (NATS_URL)")
	fs.StringVar(&c.Dir, "dir", envOr("KAIROS_STREAMS_DIR", "deploy/nats/streams"), "folder of stream definitions *.json (KAIROS_STREAMS_DIR)")
	fs.IntVar(&c.Replicas, "replicas", 0, "override num_replicas of every stream when > 0")
	fs.BoolVar(&c.Check, "check", false, "only validate the definitions, connect to nothing")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "deadline for connecting and applying")
	fs.DurationVar(&c.Attempt, "attempt-timeout", 5*time.Second, "deadline of one attempt to apply a stream; an attempt that times out or finds JetStream not ready is retried until -timeout")
	fs.StringVar(&c.CAFile, "tls-ca", envOr("NATS_CA", ""), "PEM CA bundle for a TLS server (NATS_CA)")
	fs.StringVar(&c.CertFile, "tls-cert", envOr("NATS_CERT", ""), "client certificate for mutual TLS (NATS_CERT)")
	fs.StringVar(&c.KeyFile, "tls-key", envOr("NATS_KEY", ""), "client key for mutual TLS (NATS_KEY)")
	fs.StringVar(&c.Creds, "creds", envOr("NATS_CREDS", ""), "NATS credentials file (NATS_CREDS)")
	fs.StringVar(&c.PasswordFile, "password-file", envOr("NATS_PASSWORD_FILE", ""), "file holding one line user:password, the Kairos NATS identities' format (NATS_PASSWORD_FILE)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.Timeout <= 0 {
		return c, errors.New("-timeout must be positive")
	}
	if c.Attempt <= 0 {
		return c, errors.New("-attempt-timeout must be positive")
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return c, errors.New("mutual TLS needs both -tls-cert and -tls-key")
	}
	return c, nil
}

// durationFields are written as Go durations in the files and as nanoseconds on the wire.
var durationFields = []string{"max_age", "duplicate_window", "subject_delete_marker_ttl"}

// load reads one definition, rejecting unknown fields and anything the server would refuse late.
func load(path string) (jetstream.StreamConfig, error) {
	var sc jetstream.StreamConfig
	raw, err := os.ReadFile(path)
	if err != nil {
		return sc, err
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return sc, fmt.Errorf("%s: %w", path, err)
	}
	for _, k := range durationFields {
		v, ok := fields[k]
		if !ok {
			continue
		}
		s, isString := v.(string)
		if !isString {
			return sc, fmt.Errorf("%s: %s must be a duration string such as \"24h\", got %v", path, k, v)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return sc, fmt.Errorf("%s: %s: invalid duration %q", path, k, s)
		}
		fields[k] = int64(d)
	}
	normalised, err := json.Marshal(fields)
	if err != nil {
		return sc, fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(normalised))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return sc, fmt.Errorf("%s: %w", path, err)
	}
	if sc.Name == "" || strings.ContainsAny(sc.Name, ". *>\t") {
		return sc, fmt.Errorf("%s: name %q must be non-empty without '.', '*', '>' or spaces", path, sc.Name)
	}
	if want := strings.TrimSuffix(filepath.Base(path), ".json"); !strings.EqualFold(want, sc.Name) {
		return sc, fmt.Errorf("%s: stream name %q must match the file name", path, sc.Name)
	}
	if len(sc.Subjects) == 0 {
		return sc, fmt.Errorf("%s: stream %s has no subjects", path, sc.Name)
	}
	if sc.MaxAge == 0 && sc.MaxBytes <= 0 && sc.MaxMsgs <= 0 {
		return sc, fmt.Errorf("%s: stream %s has no retention bound (max_age, max_bytes or max_msgs)", path, sc.Name)
	}
	return sc, nil
}

// loadDir reads every definition and checks that no two streams claim overlapping subjects, which
// the server rejects only when the second stream is created.
func loadDir(dir string) ([]jetstream.StreamConfig, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("%s: no *.json stream definitions", dir)
	}
	sort.Strings(paths)
	var out []jetstream.StreamConfig
	owner := map[string]string{}
	for _, p := range paths {
		sc, err := load(p)
		if err != nil {
			return nil, err
		}
		for _, s := range sc.Subjects {
			for other, name := range owner {
				if subjectsOverlap(s, other) {
					return nil, fmt.Errorf("%s: subject %q of %s overlaps %q of %s", p, s, sc.Name, other, name)
				}
			}
			owner[s] = sc.Name
		}
		out = append(out, sc)
	}
	return out, nil
}

// subjectsOverlap reports whether some subject matches both NATS patterns.
func subjectsOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		aEnd, bEnd := i >= len(at), i >= len(bt)
		switch {
		case aEnd && bEnd:
			return true
		case !aEnd && at[i] == ">":
			return !bEnd
		case !bEnd && bt[i] == ">":
			return !aEnd
		case aEnd || bEnd:
			return false
		case at[i] != "*" && bt[i] != "*" && at[i] != bt[i]:
			return false
		}
	}
}

// connect dials the server list, retrying until deadline (the server may still be starting).
func connect(c config, deadline time.Time) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("kairos-streams"), nats.Timeout(c.Timeout)}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, err
		}
		user, pass, ok := strings.Cut(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]), ":")
		if !ok || user == "" || pass == "" {
			return nil, fmt.Errorf("%s: want one line user:password", c.PasswordFile)
		}
		opts = append(opts, nats.UserInfo(user, pass))
	}
	for {
		nc, err := nats.Connect(c.Server, opts...)
		if err == nil {
			return nc, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect %s: %w", c.Server, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func apply(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig) (string, error) {
	cur, err := js.Stream(ctx, sc.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, sc); err != nil {
			return "", fmt.Errorf("create %s: %w", sc.Name, err)
		}
		return "created", nil
	case err != nil:
		return "", fmt.Errorf("look up %s: %w", sc.Name, err)
	}
	before := cur.CachedInfo().Config
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		return "", fmt.Errorf("update %s: %w", sc.Name, err)
	}
	after, err := js.Stream(ctx, sc.Name)
	if err != nil {
		return "", fmt.Errorf("re-read %s: %w", sc.Name, err)
	}
	if reflect.DeepEqual(before, after.CachedInfo().Config) {
		return "unchanged", nil
	}
	return "updated", nil
}

// retryable tells an attempt worth repeating from a refusal to report. While a cluster forms, a
// JetStream API request can go unanswered although the server acted on it (a chaos run saw a
// stream created in 0.6 s and its create request time out after 20 s), or find no JetStream
// responder or no meta leader yet. apply is idempotent, so the next attempt finds the stream and
// converges it. A configuration the server refuses (400) is never retried.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 503: JetStream not ready or no meta leader; 10005: not enough known peers for the replicas;
		// 10049: the stream's store could not be made, as when the request lands while JetStream is
		// still enabling (a lasting cause, such as a full disk, fails at -timeout with this error,
		// each attempt printed on the way).
		return apiErr.Code == 503 || apiErr.ErrorCode == 10005 || apiErr.ErrorCode == 10049
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// session is the connection the attempts use. An attempt that went unanswered drops it, so the
// next one dials again (nats.go picks a server of the list at random) with new reply subscriptions.
type session struct {
	c        config
	deadline time.Time
	nc       *nats.Conn
	js       jetstream.JetStream
}

func (s *session) jetStream() (jetstream.JetStream, error) {
	if s.nc == nil {
		nc, err := connect(s.c, s.deadline)
		if err != nil {
			return nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, err
		}
		s.nc, s.js = nc, js
	}
	return s.js, nil
}

func (s *session) close() {
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
}

// applyRetrying applies sc, each attempt bounded by attempt, repeating the retryable failures until
// ctx ends; every retry is reported on log.
func applyRetrying(ctx context.Context, s *session, sc jetstream.StreamConfig, attempt time.Duration, log io.Writer) (string, error) {
	for n := 1; ; n++ {
		js, err := s.jetStream()
		if err != nil {
			return "", err
		}
		actx, cancel := context.WithTimeout(ctx, attempt)
		what, err := apply(actx, js, sc)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return what, err
		}
		fmt.Fprintf(log, "kairos-streams: attempt %d: %v (retrying)\n", n, err)
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			s.close() // unanswered: the next attempt dials again
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "kairos-streams:", err)
		}
		return 2
	}
	streams, err := loadDir(c.Dir)
	if err != nil {
		fmt.Fprintln(stderr, "kairos-streams:", err)
		return 1
	}
	if c.Check {
		for _, sc := range streams {
			fmt.Fprintf(stdout, "%s: ok (subjects %s, max_age %s)\n", sc.Name, strings.Join(sc.Subjects, " "), sc.MaxAge)
		}
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	s := &session{c: c, deadline: deadline}
	defer s.close()
	for _, sc := range streams {
		if c.Replicas > 0 {
			sc.Replicas = c.Replicas
		}
		what, err := applyRetrying(ctx, s, sc, c.Attempt, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "kairos-streams:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %s\n", sc.Name, what)
	}
	return 0
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
