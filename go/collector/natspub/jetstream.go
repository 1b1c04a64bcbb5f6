package natspub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// ErrClosed is returned by Stored once the publisher is closed with messages not yet stored.
var ErrClosed = errors.New("natspub: publisher closed before the messages were stored")

// DefaultAckTimeout is how long a JetStream publish waits for its acknowledgement before it is
// published again (same message id, so a stored first copy is not stored twice).
const DefaultAckTimeout = 2 * time.Second

// InboxPrefix is where the collector receives JetStream's publish acknowledgements; the collector's
// NATS identity may subscribe to nothing else (deploy/nats/auth.conf).
const InboxPrefix = "_INBOX_COLLECTOR"

// maxPending bounds the publishes awaiting their acknowledgement; the publisher waits beyond it.
const maxPending = 4096

// ConnectJetStream opens a publisher on the external NATS server(s) at url (comma-separated URLs of
// a cluster) whose ticks and bars are JetStream publishes: streams must capture kairos.md.> and
// kairos.bar.> (deploy/nats/streams), and Stored says when the server has stored them.
func ConnectJetStream(url string, ackTimeout time.Duration, m *metrics.Metrics, extra ...nats.Option) (*Publisher, error) {
	if url == "" {
		return nil, errors.New("JetStream publishing needs an external NATS server (nats-url)")
	}
	if ackTimeout <= 0 {
		ackTimeout = DefaultAckTimeout
	}
	// The publish acknowledgements come back on the collector's own inbox prefix, the one subject
	// deploy/nats/auth.conf lets the collector identity subscribe to.
	p, err := Connect(url, nil, m, append([]nats.Option{nats.CustomInboxPrefix(InboxPrefix)}, extra...)...)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(p.nc, jetstream.WithPublishAsyncMaxPending(maxPending), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		p.nc.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	d := &durable{js: js, m: m, ackTimeout: ackTimeout, fifo: make(chan pending, maxPending), closing: make(chan struct{}), done: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	go d.resolve()
	p.js = d
	return p, nil
}

type pending struct {
	n    uint64 // 1-based publish number
	kind string
	msg  *nats.Msg
	fut  jetstream.PubAckFuture // nil: the asynchronous publish failed at once
}

// durable tracks JetStream publishes in order: stored is the highest n such that messages 1..n are
// all acknowledged, so waiting for n covers everything published before it.
type durable struct {
	js         jetstream.JetStream
	m          *metrics.Metrics
	ackTimeout time.Duration
	fifo       chan pending
	closing    chan struct{}
	done       chan struct{} // resolve has returned
	closeOnce  sync.Once

	mu        sync.Mutex
	cond      *sync.Cond
	published uint64 // publish goroutine only writes, under mu
	stored    uint64
	closed    bool
}

func (d *durable) publish(kind, subject string, data []byte, id string) {
	msg := nats.NewMsg(subject)
	msg.Data = data
	if id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, id)
	}
	fut, err := d.js.PublishMsgAsync(msg)
	if err != nil {
		fut = nil // resolve publishes it again, synchronously, until stored
	}
	d.mu.Lock()
	d.published++
	n := d.published
	d.mu.Unlock()
	d.fifo <- pending{n: n, kind: kind, msg: msg, fut: fut}
}

// skip numbers a message that could not be encoded (nothing to store; Stored passes it).
func (d *durable) skip() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.published++
	n := d.published
	d.mu.Unlock()
	d.fifo <- pending{n: n}
}

// resolve awaits each publish's acknowledgement in publish order; a failed or timed-out one is
// published again (same message id) until stored or the publisher closes, so the stored mark
// never passes a message that is not stored.
func (d *durable) resolve() {
	defer close(d.done)
	for pd := range d.fifo {
		ok := pd.msg == nil
		if pd.fut != nil {
			select {
			case <-pd.fut.Ok():
				ok = true
			case <-pd.fut.Err():
			case <-d.closing:
				return
			}
		}
		for backoff := 10 * time.Millisecond; !ok; backoff = min(2*backoff, time.Second) {
			d.m.NATSErrors.Inc()
			ctx, cancel := context.WithTimeout(context.Background(), d.ackTimeout)
			// A fresh message: the asynchronous publish set its own reply subject on the first.
			_, err := d.js.PublishMsg(ctx, &nats.Msg{Subject: pd.msg.Subject, Header: pd.msg.Header, Data: pd.msg.Data})
			cancel()
			if ok = err == nil; !ok {
				select {
				case <-d.closing:
					return
				case <-time.After(backoff):
				}
			}
		}
		if pd.msg != nil {
			d.m.NATSPublished.WithLabelValues(pd.kind).Inc()
		}
		d.mu.Lock()
		d.stored = pd.n
		d.mu.Unlock()
		d.cond.Broadcast()
	}
}

func (d *durable) wait(ctx context.Context, n uint64) error {
	// sync.Cond does not select on a context: a watcher wakes the waiters when ctx ends.
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.cond.Broadcast()
	})
	defer stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.stored < n {
		if d.closed {
			return ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		d.cond.Wait()
	}
	return nil
}

// close stops resolving (call it after the last publish) and releases every waiter.
func (d *durable) close() {
	d.closeOnce.Do(func() {
		close(d.closing)
		close(d.fifo)
		<-d.done
		d.mu.Lock()
		d.closed = true
		d.mu.Unlock()
		d.cond.Broadcast()
	})
}
