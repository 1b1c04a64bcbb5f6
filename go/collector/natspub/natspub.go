// Package natspub fans market data out on NATS: ticks on kairos.md.<SYMBOL>, bars on
// kairos.bar.<TF>.<SYMBOL>, predictions on kairos.pred.<SYMBOL>, protobuf payloads. It also runs the
// embedded NATS server the collector uses by default (in process, loopback only), with the users and
// subject permissions of an authorization file (ADR 0064).
//
// With JetStream (ConnectJetStream) ticks and bars are published with acknowledgements and a
// message id, and Stored tells when the server has stored them: the bridge acknowledges a frame only
// then (ADR 0024). Predictions stay plain publishes (nothing upstream waits for them).
package natspub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/bars"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// StartEmbedded starts a NATS server in this process listening on addr ("127.0.0.1:4222"; port 0
// picks a free one) and waits until it accepts connections. authFile, if not empty, is a
// nats-server configuration file whose authorization block (users with passwords and
// publish/subscribe permissions) the server enforces; its other settings are ignored.
func StartEmbedded(addr, authFile string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "kairos-collector-embedded",
		Host:       host,
		Port:       port,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
		// Slow NATS consumers are cut by the server after this, so they never hold the collector back.
		WriteDeadline: 2 * time.Second,
	}
	if authFile != "" {
		auth, err := server.ProcessConfigFile(authFile)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS authorization: %w", err)
		}
		if len(auth.Users) == 0 && len(auth.Nkeys) == 0 {
			return nil, fmt.Errorf("embedded NATS authorization %s: no users", authFile)
		}
		opts.Users, opts.Nkeys = auth.Users, auth.Nkeys
		// Denied publishes and subscriptions are logged by the server as permissions violations
		// and answered to the client with -ERR; NoLog keeps them out of the collector's log.
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded NATS did not become ready within 10s")
	}
	return s, nil
}

// Token turns a symbol into one NATS subject token: '.', '*', '>' and whitespace would split or
// widen a subject, so they become '_' ("EURUSD.r" -> "EURUSD_r"). The payload keeps the real name.
func Token(symbol string) string {
	if !strings.ContainsAny(symbol, ".*> \t\r\n") && symbol != "" {
		return symbol
	}
	if symbol == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, symbol)
}

// TickSubject is kairos.md.<SYMBOL>.
func TickSubject(symbol string) string { return "kairos.md." + Token(symbol) }

// BarSubject is kairos.bar.<TF>.<SYMBOL>, TF the MT5 timeframe name (M1, H1, ...).
func BarSubject(b *mdv1.Bar) string {
	return "kairos.bar." + bars.Timeframe(b.PeriodS) + "." + Token(b.Symbol)
}

// PredSubject is kairos.pred.<SYMBOL>.
func PredSubject(symbol string) string { return "kairos.pred." + Token(symbol) }

// Publisher publishes protobuf payloads on one NATS connection. Safe for concurrent use, except
// that Ticks and Bar are called by one goroutine (the pipeline's publisher): their order numbers the
// messages Stored waits for.
type Publisher struct {
	nc *nats.Conn
	m  *metrics.Metrics
	js *durable // nil: plain NATS publishes, nothing to wait for

	// The hot path's state, used by the one goroutine that calls Ticks and Bar: counters looked up
	// once, subjects built once per symbol (and period), the plain publishes' bar encoding buffer
	// (nats.Conn.Publish copies the payload; JetStream keeps it for retries, so it gets its own).
	pubMD, pubBar, ticksOut prometheus.Counter
	tickSubj                map[string]string
	barSubj                 map[barKey]string
	lastBar                 lastBarSymbol
	barBuf                  []byte
}

type barKey struct {
	symbol string
	period uint32
}

// lastBarSymbol is the bar subjects of the symbol whose bar was published last, by period, and
// whether its name is UTF-8: bars come symbol by symbol (a quiet batch closes ~5 of one), so most
// skip the map's hash of the symbol and the UTF-8 check.
type lastBarSymbol struct {
	symbol   string
	utf8     bool
	periods  [maxLastBarPeriods]uint32
	subjects [maxLastBarPeriods]string
	n        int
}

// maxLastBarPeriods bounds lastBarSymbol; further periods of the symbol go to the map only.
const maxLastBarPeriods = 8

// barSubject is BarSubject, built once per symbol and period, and whether the symbol is UTF-8.
func (p *Publisher) barSubject(b *mdv1.Bar) (string, bool) {
	last := &p.lastBar
	if b.Symbol != last.symbol || last.n == 0 {
		*last = lastBarSymbol{symbol: b.Symbol, utf8: utf8.ValidString(b.Symbol)}
	}
	for i := range last.n {
		if last.periods[i] == b.PeriodS {
			return last.subjects[i], last.utf8
		}
	}
	k := barKey{b.Symbol, b.PeriodS}
	subject, ok := p.barSubj[k]
	if !ok {
		if len(p.barSubj) >= maxSubjects {
			clear(p.barSubj)
		}
		subject = BarSubject(b)
		p.barSubj[k] = subject
	}
	if last.n < maxLastBarPeriods {
		last.periods[last.n], last.subjects[last.n] = b.PeriodS, subject
		last.n++
	}
	return subject, last.utf8
}

// maxSubjects bounds each subject cache; past it the cache starts again (the pipeline bounds symbols
// anyway, with max-symbols).
const maxSubjects = 16384

// Connect opens a publisher on url, or in process on the embedded server if srv is not nil; extra
// options carry credentials (nats.UserInfo).
func Connect(url string, srv *server.Server, m *metrics.Metrics, extra ...nats.Option) (*Publisher, error) {
	opts := []nats.Option{nats.Name("kairos-collector"), nats.MaxReconnects(-1), nats.ReconnectBufSize(64 << 20)}
	opts = append(opts, extra...)
	if srv != nil {
		opts = append(opts, nats.InProcessServer(srv))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS connect: %w", err)
	}
	return &Publisher{nc: nc, m: m, pubMD: m.NATSPublished.WithLabelValues("md"), pubBar: m.NATSPublished.WithLabelValues("bar"),
		ticksOut: m.TicksOut.WithLabelValues("nats"), tickSubj: map[string]string{}, barSubj: map[barKey]string{}}, nil
}

// Conn exposes the connection (tests and benchmarks subscribe on it).
func (p *Publisher) Conn() *nats.Conn { return p.nc }

func (p *Publisher) publish(kind, subject string, msg proto.Message) {
	data, err := proto.Marshal(msg)
	if err == nil {
		err = p.nc.Publish(subject, data)
	}
	if err != nil {
		p.m.NATSErrors.Inc()
		return
	}
	p.m.NATSPublished.WithLabelValues(kind).Inc()
}

// Ticks publishes a validated batch; raw, if not nil, is its encoding (saves encoding it again).
func (p *Publisher) Ticks(b *mdv1.TickBatch, raw []byte) {
	if raw == nil {
		var err error
		if raw, err = proto.Marshal(b); err != nil {
			p.m.NATSErrors.Inc()
			p.js.skip() // keeps Stored's numbering (nil-safe)
			return
		}
	}
	subject := p.tickSubject(b.Symbol)
	if p.js != nil {
		p.js.publish("md", subject, raw, TickMsgID(b))
	} else if err := p.nc.Publish(subject, raw); err != nil {
		p.m.NATSErrors.Inc()
	} else {
		p.pubMD.Inc()
	}
	p.ticksOut.Add(float64(len(b.TimeMsc)))
}

// tickSubject is TickSubject, built once per symbol.
func (p *Publisher) tickSubject(symbol string) string {
	subject, ok := p.tickSubj[symbol]
	if !ok {
		if len(p.tickSubj) >= maxSubjects {
			clear(p.tickSubj)
		}
		subject = TickSubject(symbol)
		p.tickSubj[symbol] = subject
	}
	return subject
}

// TicksEncoded publishes a validated batch from its encoding alone (and keeps no reference to raw
// once it returns): symbol names the subject, ticks counts them (ingest.RawTicksSink; the pipeline uses it without JetStream only, Ticks carries the
// message id JetStream needs).
func (p *Publisher) TicksEncoded(symbol string, ticks int, raw []byte) {
	subject := p.tickSubject(symbol)
	if p.js != nil {
		// JetStream keeps the bytes for its retries; raw may be recycled once this returns.
		p.js.publish("md", subject, bytes.Clone(raw), "")
	} else if err := p.nc.Publish(subject, raw); err != nil {
		p.m.NATSErrors.Inc()
	} else {
		p.pubMD.Inc()
	}
	p.ticksOut.Add(float64(ticks))
}

// Bar publishes a closed bar.
func (p *Publisher) Bar(b *mdv1.Bar) {
	subject, valid := p.barSubject(b)
	var data []byte
	if valid {
		if p.js == nil {
			p.barBuf = bars.AppendProto(p.barBuf[:0], b)
			data = p.barBuf
		} else {
			data = bars.AppendProto(make([]byte, 0, bars.ProtoSize(b)), b)
		}
	} else {
		// proto.Marshal refuses a string that is not UTF-8 (a symbol no source lets through).
		var err error
		if data, err = proto.Marshal(b); err != nil {
			p.m.NATSErrors.Inc()
			p.js.skip() // keeps Stored's numbering (nil-safe)
			return
		}
	}
	if p.js != nil {
		p.js.publish("bar", subject, data, fmt.Sprintf("bar:%s:%d:%d", b.Symbol, b.PeriodS, b.OpenTimeMsc))
	} else if err := p.nc.Publish(subject, data); err != nil {
		p.m.NATSErrors.Inc()
	} else {
		p.pubBar.Inc()
	}
}

// TickMsgID is a tick batch's JetStream message id (Nats-Msg-Id): the same ticks get the same id, so
// a publish repeated after a lost acknowledgement is stored once (within the stream's duplicate
// window). The bridge numbers each symbol's ticks per session, so a new session (a terminal
// restarted) numbers from 1 again: the times of the first and last tick are part of the id, or a new
// session's first batches would be dropped as duplicates of the old session's within the window.
// Without numbers the batch's times and size stand in.
func TickMsgID(b *mdv1.TickBatch) string {
	n := len(b.TimeMsc)
	if n == 0 {
		return ""
	}
	if len(b.Sequence) == n {
		return fmt.Sprintf("md:%s:s%d-%d:t%d-%d", b.Symbol, b.Sequence[0], b.Sequence[n-1], b.TimeMsc[0], b.TimeMsc[n-1])
	}
	return fmt.Sprintf("md:%s:t%d-%d:%d", b.Symbol, b.TimeMsc[0], b.TimeMsc[n-1], n)
}

// Durable reports whether Ticks and Bar are acknowledged by JetStream (ConnectJetStream).
func (p *Publisher) Durable() bool { return p.js != nil }

// Published is how many messages Ticks and Bar have published so far.
func (p *Publisher) Published() uint64 {
	if p.js == nil {
		return 0
	}
	p.js.mu.Lock()
	defer p.js.mu.Unlock()
	return p.js.published
}

// Stored returns once the first n messages published by Ticks and Bar are stored by JetStream (at
// once without JetStream), or with an error when ctx ends or the publisher closes first.
func (p *Publisher) Stored(ctx context.Context, n uint64) error {
	if p.js == nil {
		return nil
	}
	return p.js.wait(ctx, n)
}

// Prediction publishes a prediction received from inference.
func (p *Publisher) Prediction(pr *inferv1.Prediction) { p.publish("pred", PredSubject(pr.Symbol), pr) }

// Close flushes what is buffered (bounded by timeout) and closes the connection. With JetStream it
// first waits, within timeout, for what was published to be stored.
func (p *Publisher) Close(timeout time.Duration) error {
	var err error
	if p.js != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err = p.js.wait(ctx, p.Published())
		cancel()
		p.js.close()
	}
	err = errors.Join(err, p.nc.FlushTimeout(timeout))
	p.nc.Close()
	return err
}
