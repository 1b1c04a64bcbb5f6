package bridgelink

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protodelim"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// Conn is one bridge connection, from accept to close. Its reader runs the handshake and the
// Handler; its writer goroutine sends Welcome, the frames queued by Send and the heartbeats.
type Conn struct {
	l     *Listener
	nc    net.Conn
	log   *slog.Logger
	hello *bridgev1.Hello
	sess  *session   // set under l.mu once Hello is accepted
	ip    netip.Addr // the remote address, as the failed-handshake gate counts it
	// authed: the Hello proved the key (or the listener is insecure); a later failure is not the
	// peer's failure to authenticate.
	authed bool

	out      chan *bridgev1.Frame // frames for the writer besides heartbeats
	ackMoved chan struct{}        // the reader processed frames (capacity 1)
	done     chan struct{}        // closed by stop
	finished chan struct{}        // closed when run has returned: a replacement may proceed
	once     sync.Once
	cause    error         // why the connection ended; written once, before done closes
	ack      atomic.Uint64 // highest sequence of this session processed (cumulative ack)
	echo     atomic.Int64  // time_us of the peer's last heartbeat, echoed back
	seq      uint64        // this side's frame numbering (writer goroutine only)
	// The reader goroutine's counter of the last inbound body kind: a stream of tick frames counts
	// them without a label lookup (a hash and a read lock) per frame.
	inBody  string
	inCount prometheus.Counter
}

// SessionID is Hello.session_id.
func (c *Conn) SessionID() uint64 { return c.hello.GetSessionId() }

// Key is SessionKey(SessionID()).
func (c *Conn) Key() string { return SessionKey(c.SessionID()) }

// Hello is the peer's Hello.
func (c *Conn) Hello() *bridgev1.Hello { return c.hello }

// Done is closed when the connection ends: a Handler waiting on something slow selects on it.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Log is the connection's logger (remote address, channel, session id).
func (c *Conn) Log() *slog.Logger { return c.log }

// Send queues a frame for the peer; the writer numbers it and adds the current ack. It fails once
// the connection has ended, or when the peer has not read SendQueue frames (never blocks).
func (c *Conn) Send(f *bridgev1.Frame) error {
	select {
	case <-c.done:
		return ErrNotConnected
	default:
	}
	if !c.enqueue(f) {
		return ErrSendQueueFull
	}
	return nil
}

// Reject sends Error{REJECTED} about the peer's frame seq: understood, refused, the link goes on.
func (c *Conn) Reject(seq uint64, msg string) {
	_ = c.Send(errorFrame(bridgev1.ErrorCode_ERROR_CODE_REJECTED, msg, seq))
}

func (c *Conn) enqueue(f *bridgev1.Frame) bool {
	select {
	case c.out <- f:
		return true
	default:
		return false
	}
}

func errorFrame(code bridgev1.ErrorCode, msg string, seq uint64) *bridgev1.Frame {
	return &bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: code, Message: msg, FrameSequence: seq}}}
}

func (l *Listener) newConn(nc net.Conn) *Conn {
	return &Conn{l: l, nc: nc, ip: remoteIP(nc.RemoteAddr()), log: l.log.With("remote", nc.RemoteAddr().String()),
		out: make(chan *bridgev1.Frame, l.cfg.SendQueue), ackMoved: make(chan struct{}, 1),
		done: make(chan struct{}), finished: make(chan struct{})}
}

// stop ends the connection: the reader returns at its next read, the writer flushes what is
// queued (a final Error frame) and returns. The first cause wins.
func (c *Conn) stop(cause error) {
	c.once.Do(func() {
		c.cause = cause
		close(c.done)
		// Wake a blocked Read; the reader checks done after every deadline it sets, so a later
		// SetReadDeadline cannot undo this.
		_ = c.nc.SetReadDeadline(time.Now())
	})
}

func (c *Conn) stopped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// frameError is a protocol failure: reason labels the metric, code goes back to the peer.
type frameError struct {
	reason string
	code   bridgev1.ErrorCode
	msg    string
	seq    uint64
}

func (e *frameError) Error() string { return e.msg }

// handlerError is the Handler refusing to go on (e.g. the journal failed).
type handlerError struct{ err error }

func (e *handlerError) Error() string { return "handling frames: " + e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

func (c *Conn) run() {
	l := c.l
	defer close(c.finished)
	defer c.nc.Close()
	defer func() {
		if c.sess != nil {
			l.m.Connections.Dec()
		}
	}()
	br := bufio.NewReaderSize(c.nc, 64<<10)
	helloSeq, err := c.handshake(br)
	l.handshakeDone(c, err)
	if err != nil {
		if !c.stopped() {
			c.fail(err)
		}
		c.stop(err)
		// No writer yet: what is queued (the refusal, or SHUTTING_DOWN) goes out directly.
		c.writeQueued()
		return
	}

	var writerWG sync.WaitGroup
	writerWG.Add(1)
	go func() { defer writerWG.Done(); c.writer() }()
	h := l.ch.Open(c)
	c.log.Info("bridge session started", "resume_after", c.ack.Load())
	err = c.serve(br, h, helloSeq)
	c.stop(err)
	// The writer flushes a final Error frame before the socket closes; then the channel learns the
	// connection is gone, and only after that may a replacement open (finished).
	writerWG.Wait()
	h.Closed(c.cause)
	c.log.Info("bridge connection closed", "reason", c.cause.Error())
}

// serve reads and handles frames until the connection ends; it returns why.
func (c *Conn) serve(br *bufio.Reader, h Handler, helloSeq uint64) error {
	dead := 3 * c.l.cfg.HeartbeatInterval
	batch := make([]Inbound, 0, c.l.cfg.MaxBatch)
	// Moving the deadline is a runtime timer update per read; on a busy stream it moves at most
	// every dead/16, so a silent connection ends between 15/16 of dead and dead after its last frame.
	var armed time.Time
	for {
		if now := time.Now(); now.Sub(armed) >= dead/16 {
			_ = c.nc.SetReadDeadline(now.Add(dead))
			armed = now
		}
		if c.stopped() {
			return c.cause
		}
		in, err := c.read(br, c.l.cfg.MaxFrameBytes)
		if err != nil {
			if c.stopped() {
				return c.cause
			}
			c.fail(err)
			return err
		}
		batch = append(batch[:0], in)
		// Frames already buffered go to the handler together (one journal flush for the batch). A
		// read error among them is reported after the frames before it are handled.
		var pending error
		for len(batch) < c.l.cfg.MaxBatch && br.Buffered() > 0 {
			g, err := c.read(br, c.l.cfg.MaxFrameBytes)
			if err != nil {
				pending = err
				break
			}
			batch = append(batch, g)
		}
		if err := c.process(h, batch, helloSeq); err != nil {
			c.fail(err)
			return err
		}
		if pending != nil {
			if c.stopped() {
				return c.cause
			}
			c.fail(pending)
			return pending
		}
	}
}

func (c *Conn) read(br *bufio.Reader, limit int) (Inbound, error) {
	raw, err := ReadRawInto(br, limit, c.l.cfg.FrameBuffer)
	if err != nil {
		return Inbound{}, err
	}
	f, err := Decode(raw, c.l.cfg.Decode)
	if err != nil {
		return Inbound{}, &frameError{ReasonMalformed, bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, "malformed frame: " + err.Error(), 0}
	}
	if body := BodyName(f); body != c.inBody || c.inCount == nil {
		c.inBody, c.inCount = body, c.l.m.Frames.WithLabelValues("in", body)
	}
	c.inCount.Inc()
	return Inbound{Frame: f, Raw: raw, RecvUs: time.Now().UnixMicro()}, nil
}

// challenge writes the connection's first frame: a fresh nonce the Hello must prove the key over.
// Sequence 0: it is never resent (a new connection gets a new challenge).
func (c *Conn) challenge(nonce []byte) error {
	f := &bridgev1.Frame{SentTimeUs: time.Now().UnixMicro(), Body: &bridgev1.Frame_Challenge{Challenge: &bridgev1.Challenge{
		ServerNonce: nonce, AuthRequired: len(c.l.cfg.Key) > 0}}}
	if _, err := protodelim.MarshalTo(c.nc, f); err != nil {
		return err
	}
	c.l.m.Frames.WithLabelValues("out", "challenge").Inc()
	return nil
}

// handshake sends the Challenge, reads Hello, checks its key proof, replaces the session's older
// connection and queues Welcome. It returns the Hello's sequence: the DLL sends 0, older peers
// numbered Hello like a data frame. The Challenge and Hello must be through within
// HandshakeTimeout of the start, however slowly the peer's bytes come, and Hello within
// MaxHandshakeBytes (guard.go).
func (c *Conn) handshake(br *bufio.Reader) (uint64, error) {
	l := c.l
	deadline := time.Now().Add(l.cfg.HandshakeTimeout)
	_ = c.nc.SetWriteDeadline(deadline)
	nonce := make([]byte, NonceBytes)
	if _, err := rand.Read(nonce); err != nil {
		return 0, fmt.Errorf("bridge challenge nonce: %w", err)
	}
	if err := c.challenge(nonce); err != nil {
		return 0, c.handshakeErr(err)
	}
	_ = c.nc.SetReadDeadline(deadline)
	if c.stopped() {
		return 0, c.cause
	}
	in, err := c.read(br, l.cfg.MaxHandshakeBytes)
	if err != nil {
		if c.stopped() {
			return 0, c.cause
		}
		return 0, c.handshakeErr(err)
	}
	f := in.Frame
	h := f.GetHello()
	switch {
	case h == nil:
		return 0, &frameError{ReasonProtocol, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, "the first frame must be Hello", f.Sequence}
	case h.Channel != l.cfg.Channel:
		return 0, &frameError{ReasonProtocol, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION,
			fmt.Sprintf("this is the %s listener (%s): Hello.channel must be %v, got %v", l.m.Channel, l.cfg.ServerVersion, l.cfg.Channel, h.Channel), f.Sequence}
	case h.ApiVersion < MinAPIVersion || h.ApiVersion > APIVersion:
		return 0, &frameError{ReasonUnsupportedVersion, bridgev1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION,
			fmt.Sprintf("bridge api_version %d is not supported (want %d): install the DLL and EA of this release", h.ApiVersion, APIVersion), f.Sequence}
	}
	if len(l.cfg.Key) > 0 {
		// Every Hello proves the key, a reconnect of a live session too: it is checked before the
		// session is looked at, so an unproven Hello can neither replace a connection nor learn a
		// resume point.
		if reason := verifyHello(l.cfg.Key, nonce, h); reason != "" {
			l.m.AuthFailures.WithLabelValues(reason).Inc()
			msg := map[string]string{
				AuthMissingProof:   "Hello carries no proof of the bridge key: set the EA's BridgeKey input to the key `kairos up` printed",
				AuthMalformedProof: "Hello's bridge key proof is malformed",
				AuthBadProof:       "Hello's bridge key proof does not verify: the EA's BridgeKey is not this server's key",
			}[reason]
			c.log.Warn("bridge hello refused: not authenticated", "reason", reason, "session_id", h.SessionId)
			return 0, &frameError{ReasonUnauthenticated, bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, msg, f.Sequence}
		}
	}
	c.authed = true
	c.hello = h
	c.log = c.log.With("session_id", h.SessionId)
	c.log.Info("bridge hello", "bridge_version", h.BridgeVersion, "terminal", h.TerminalName, "build", h.TerminalBuild,
		"server", h.Server, "account", h.AccountLogin, "trade_mode", h.TradeMode.String())
	sess, old, err := l.register(c, h.SessionId)
	if err != nil {
		return 0, err
	}
	// Counted from registration (run undoes it), so a replacement never shows zero connections.
	l.m.Connections.Inc()
	// One connection per session (per listener when Exclusive): the older one stops and is waited
	// for, so it has finished its frames before resume_after is read and no two handlers ever run
	// for one session. A half-dead predecessor thus cannot process a frame the new one also gets.
	for _, o := range old {
		o.stop(ErrReplaced)
	}
	for _, o := range old {
		<-o.finished
	}
	if c.stopped() {
		return 0, c.cause
	}
	sess.mu.Lock()
	resume := sess.lastSeq
	if f.Sequence != 0 && f.Sequence == resume+1 {
		// Hello took the next number and nothing is pending before it: it counts as processed.
		sess.lastSeq = f.Sequence
	}
	c.ack.Store(sess.lastSeq)
	sess.mu.Unlock()
	w := &bridgev1.Welcome{ServerVersion: l.cfg.ServerVersion, ResumeAfter: resume,
		HeartbeatIntervalMs: uint32(l.cfg.HeartbeatInterval.Milliseconds())}
	if len(l.cfg.Key) > 0 {
		w.ServerProof = Proof(l.cfg.Key, true, nonce, h.ClientNonce, h.SessionId, h.Channel, h.ApiVersion)
	}
	c.enqueue(&bridgev1.Frame{Body: &bridgev1.Frame_Welcome{Welcome: w}})
	return f.Sequence, nil
}

// handshakeErr names a deadline hit during the handshake: the peer did not finish it in time (a
// slowloris, or a client that is not a bridge).
func (c *Conn) handshakeErr(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &frameError{ReasonHandshakeTimeout, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION,
			fmt.Sprintf("no complete Hello within the %s handshake timeout", c.l.cfg.HandshakeTimeout), 0}
	}
	return err
}

// process drops duplicates, counts gaps, answers heartbeats and hands the rest to the Handler;
// what it reports processed becomes the session's resume point and the ack.
func (c *Conn) process(h Handler, batch []Inbound, helloSeq uint64) error {
	m := c.l.m
	sess := c.sess
	last := sess.last()
	deliver := make([]Inbound, 0, len(batch))
	for _, in := range batch {
		f := in.Frame
		seq := f.Sequence
		switch b := f.Body.(type) {
		case *bridgev1.Frame_Hello:
			return &frameError{ReasonProtocol, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, "second Hello on one connection", seq}
		case nil:
			return &frameError{ReasonMalformed, bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, "frame without a body", seq}
		case *bridgev1.Frame_Heartbeat:
			if seq > 0 && seq <= last {
				break // a resent numbered heartbeat says nothing new
			}
			c.echo.Store(b.Heartbeat.TimeUs)
			if e := b.Heartbeat.EchoTimeUs; e > 0 && in.RecvUs >= e {
				m.HeartbeatRTT.Observe(float64(in.RecvUs-e) / 1e6)
			}
		case *bridgev1.Frame_Error:
			if seq > 0 && seq <= last {
				break
			}
			c.log.Warn("bridge reported an error", "code", b.Error.Code.String(), "message", b.Error.Message, "frame_sequence", b.Error.FrameSequence)
		}
		if seq == 0 {
			switch f.Body.(type) {
			case *bridgev1.Frame_Heartbeat, *bridgev1.Frame_Error:
				continue // link-level only
			}
			deliver = append(deliver, in)
			continue
		}
		if seq <= last {
			m.Duplicates.Inc()
			continue
		}
		if last == 0 && seq > 1 {
			// No history of this session (a service restarted without its state): what came before
			// is unknown, not missing.
			c.log.Info("bridge session continues without server state", "first_sequence", seq)
		} else if seq > last+1 {
			missing := seq - last - 1
			if helloSeq > last && helloSeq < seq {
				missing-- // the Hello of this connection holds one of the numbers
			}
			if missing > 0 {
				m.SequenceGaps.Inc()
				m.GapFrames.Add(float64(missing))
				c.log.Warn("bridge frame sequence gap", "after", last, "got", seq, "missing", missing)
			}
		}
		last = seq
		deliver = append(deliver, in)
	}
	if len(deliver) == 0 {
		return nil
	}
	n, err := h.Frames(deliver)
	n = min(max(n, 0), len(deliver))
	var top uint64
	for _, in := range deliver[:n] {
		top = max(top, in.Frame.Sequence)
	}
	if top > 0 {
		sess.advance(top)
		c.ack.Store(sess.last())
		select {
		case c.ackMoved <- struct{}{}:
		default:
		}
	}
	if err != nil {
		return &handlerError{err}
	}
	if n < len(deliver) {
		// The bridge resends what was not acknowledged, but only on a new connection.
		return &handlerError{fmt.Errorf("the channel processed %d of %d frames", n, len(deliver))}
	}
	return nil
}

// fail classifies why the connection ends: counted, logged and, for a bad frame, told to the peer
// with an Error frame (queued; the writer or writeQueued sends it before the socket closes).
func (c *Conn) fail(err error) {
	m := c.l.m
	var fe *frameError
	var tooLarge *protodelim.SizeTooLargeError
	var he *handlerError
	switch {
	case errors.As(err, &fe):
	case errors.As(err, &tooLarge):
		fe = &frameError{ReasonOversized, bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME,
			fmt.Sprintf("frame of %d bytes exceeds the %d-byte limit", tooLarge.Size, tooLarge.MaxSize), 0}
	case errors.As(err, &he):
		c.log.Warn("closing bridge connection: the channel failed", "err", he.err)
		return
	case errors.Is(err, ErrShuttingDown):
		return
	case errors.Is(err, io.EOF):
		c.log.Info("bridge disconnected")
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		m.FrameErrors.WithLabelValues(ReasonHeartbeatTimeout).Inc()
		c.log.Warn("bridge connection dead: no frame for three heartbeat intervals")
		return
	case errors.Is(err, io.ErrUnexpectedEOF):
		m.FrameErrors.WithLabelValues(ReasonTruncated).Inc()
		c.log.Warn("bridge connection closed in the middle of a frame")
		return
	default:
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
			m.FrameErrors.WithLabelValues(ReasonIO).Inc()
			c.log.Warn("bridge connection I/O error", "err", err)
			return
		}
		fe = &frameError{ReasonMalformed, bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, "malformed frame: " + err.Error(), 0}
	}
	m.FrameErrors.WithLabelValues(fe.reason).Inc()
	c.log.Warn("closing bridge connection", "reason", fe.reason, "detail", fe.msg, "frame_sequence", fe.seq)
	c.enqueue(errorFrame(fe.code, fe.msg, fe.seq))
}

// writeQueued sends what is queued without the writer goroutine (a refused handshake), briefly.
func (c *Conn) writeQueued() {
	bw := bufio.NewWriter(c.nc)
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	for {
		select {
		case f := <-c.out:
			if c.writeFrame(bw, f) != nil {
				return
			}
		default:
			_ = bw.Flush()
			return
		}
	}
}

// writeFrame numbers f (heartbeats stay 0: they are never resent), stamps the ack and the time.
func (c *Conn) writeFrame(bw *bufio.Writer, f *bridgev1.Frame) error {
	if _, hb := f.Body.(*bridgev1.Frame_Heartbeat); hb {
		f.Sequence = 0
	} else {
		c.seq++
		f.Sequence = c.seq
	}
	f.Ack = c.ack.Load()
	f.SentTimeUs = time.Now().UnixMicro()
	if _, err := protodelim.MarshalTo(bw, f); err != nil {
		return err
	}
	c.l.m.Frames.WithLabelValues("out", BodyName(f)).Inc()
	return nil
}

// writer sends Welcome and queued frames as they come (coalesced into one flush), a heartbeat every
// interval, and a heartbeat carrying the ack when it moved: at once, or every AckInterval.
func (c *Conn) writer() {
	cfg := c.l.cfg
	bw := bufio.NewWriterSize(c.nc, 16<<10)
	hb := time.NewTicker(cfg.HeartbeatInterval)
	defer hb.Stop()
	ackMoved := c.ackMoved
	var ackTick <-chan time.Time
	if cfg.AckInterval > 0 {
		ackMoved = nil
		t := time.NewTicker(cfg.AckInterval)
		defer t.Stop()
		ackTick = t.C
	}
	var sentAck uint64
	heartbeat := func() *bridgev1.Frame {
		return &bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: time.Now().UnixMicro(), EchoTimeUs: c.echo.Load()}}}
	}
	// send writes frames and flushes; false ends the writer (the connection is stopped).
	send := func(frames ...*bridgev1.Frame) bool {
		if !c.stopped() {
			_ = c.nc.SetWriteDeadline(time.Now().Add(3 * cfg.HeartbeatInterval))
		}
		for _, f := range frames {
			if err := c.writeFrame(bw, f); err != nil {
				c.stop(fmt.Errorf("write failed: %w", err))
				return false
			}
			sentAck = f.Ack
		}
		// Coalesce whatever else is queued into the same flush.
		for more := true; more; {
			select {
			case f := <-c.out:
				if err := c.writeFrame(bw, f); err != nil {
					c.stop(fmt.Errorf("write failed: %w", err))
					return false
				}
				sentAck = f.Ack
			default:
				more = false
			}
		}
		if err := bw.Flush(); err != nil {
			c.stop(fmt.Errorf("write failed: %w", err))
			return false
		}
		return true
	}
	for {
		select {
		case f := <-c.out:
			if !send(f) {
				return
			}
		case <-ackMoved:
			if c.ack.Load() != sentAck && !send(heartbeat()) {
				return
			}
		case <-ackTick:
			if c.ack.Load() != sentAck && !send(heartbeat()) {
				return
			}
		case <-hb.C:
			if !send(heartbeat()) {
				return
			}
		case <-c.done:
			// Flush what is queued (a final Error frame) before the socket closes, briefly.
			_ = c.nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			select {
			case f := <-c.out:
				send(f)
			default:
			}
			return
		}
	}
}
