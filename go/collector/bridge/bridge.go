// Package bridge is the collector's TCP listener for the MT5 bridge DLL's market-data connection:
// varint-length-delimited kairos.bridge.v1 frames, Hello/Welcome, heartbeats both ways, cumulative
// acks, and per-session sequence tracking so that a reconnecting bridge resumes where the collector
// stopped, duplicates are dropped and counted, and gaps are counted.
package bridge

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/collector/ingest"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// APIVersion is the bridge C ABI version this collector speaks (Hello.api_version).
const APIVersion = 1

// Config shapes the listener.
type Config struct {
	// Addr is the TCP listen address.
	Addr string
	// HeartbeatInterval is announced in Welcome; a peer silent for three intervals is dropped.
	HeartbeatInterval time.Duration
	// AckInterval is how often a changed cumulative ack is sent, so the bridge can trim its resend buffer.
	AckInterval time.Duration
	// MaxFrameBytes closes a connection whose frame is larger.
	MaxFrameBytes int
	// ServerVersion is sent in Welcome.
	ServerVersion string
}

type session struct {
	id      uint64
	src     *ingest.Source
	mu      sync.Mutex
	lastSeq uint64 // highest frame sequence processed from this session
	active  *conn
}

// Listener accepts bridge connections.
type Listener struct {
	cfg  Config
	pipe *ingest.Pipeline
	m    *metrics.Metrics
	log  *slog.Logger
	ln   net.Listener

	mu       sync.Mutex
	sessions map[uint64]*session
	conns    map[*conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// Listen binds cfg.Addr; Serve accepts connections.
func Listen(cfg Config, pipe *ingest.Pipeline, m *metrics.Metrics, log *slog.Logger) (*Listener, error) {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.AckInterval <= 0 {
		cfg.AckInterval = 20 * time.Millisecond
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = 1 << 20
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("bridge listener: %w", err)
	}
	return &Listener{cfg: cfg, pipe: pipe, m: m, log: log, ln: ln, sessions: map[uint64]*session{}, conns: map[*conn]struct{}{}}, nil
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Serve accepts connections until Close; each runs in goroutines owned by the listener.
func (l *Listener) Serve() error {
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		c := l.newConn(nc)
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			nc.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			c.run()
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

// Close stops accepting, tells every bridge the collector is shutting down, closes the connections
// and waits for their goroutines (bounded by ctx).
func (l *Listener) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	err := l.ln.Close()
	for _, c := range conns {
		c.shutdown("collector shutting down")
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sessions returns each session's highest processed sequence, for the state file.
func (l *Listener) Sessions() map[uint64]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint64]uint64, len(l.sessions))
	for id, s := range l.sessions {
		s.mu.Lock()
		out[id] = s.lastSeq
		s.mu.Unlock()
	}
	return out
}

// RestoreSessions loads sequences saved by a previous run, so Welcome.resume_after stays right.
func (l *Listener) RestoreSessions(st map[uint64]uint64) {
	for id, seq := range st {
		s := l.session(id)
		s.mu.Lock()
		s.lastSeq = seq
		s.mu.Unlock()
	}
}

func (l *Listener) session(id uint64) *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sessions[id]
	if s == nil {
		s = &session{id: id, src: l.pipe.Source(SourceName(id), "bridge")}
		l.sessions[id] = s
	}
	return s
}

// SourceName is the ingest source of a bridge session.
func SourceName(sessionID uint64) string { return "bridge:" + strconv.FormatUint(sessionID, 16) }

type conn struct {
	l        *Listener
	nc       net.Conn
	log      *slog.Logger
	out      chan *bridgev1.Frame // frames for the writer besides heartbeats
	done     chan struct{}
	finished chan struct{}
	once     sync.Once
	ack      atomic.Uint64
	echo     atomic.Int64 // time_us of the last heartbeat received, echoed back
	seq      uint64       // server's own frame sequence (writer goroutine only)
	reason   atomic.Value // why the connection ended
	lastErr  atomic.Value // *bridgev1.Frame: the error frame that ended the handshake
}

func (l *Listener) newConn(nc net.Conn) *conn {
	return &conn{l: l, nc: nc, log: l.log.With("remote", nc.RemoteAddr().String()),
		out: make(chan *bridgev1.Frame, 16), done: make(chan struct{}), finished: make(chan struct{})}
}

// shutdown ends the connection with a SHUTTING_DOWN error frame (best effort).
func (c *conn) shutdown(msg string) {
	c.send(&bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: bridgev1.ErrorCode_ERROR_CODE_SHUTTING_DOWN, Message: msg}}})
	c.stop(msg)
}

func (c *conn) stop(reason string) {
	c.once.Do(func() {
		c.reason.Store(reason)
		close(c.done)
		// Wake a blocked Read; run checks done after every deadline it sets, so this cannot be undone.
		_ = c.nc.SetReadDeadline(time.Now())
	})
}

// send queues a frame for the writer without blocking; a bridge that does not read loses error frames only.
func (c *conn) send(f *bridgev1.Frame) {
	select {
	case c.out <- f:
	default:
	}
}

func (c *conn) run() {
	l := c.l
	l.m.BridgeConnections.Inc()
	defer l.m.BridgeConnections.Dec()
	defer close(c.finished)
	defer c.nc.Close()
	var writerWG sync.WaitGroup
	// Deferred in this order: stop, then wait for the writer to flush a final error, then close.
	defer writerWG.Wait()
	defer c.stop("connection ended")

	br := bufio.NewReaderSize(c.nc, 64<<10)
	dead := 3 * l.cfg.HeartbeatInterval
	sess, helloSeq, err := c.handshake(br, dead)
	if err != nil {
		c.fail(err)
		// Let the writer-less error reach the peer before closing.
		c.writeDirect(c.pendingError())
		return
	}
	defer func() {
		sess.mu.Lock()
		if sess.active == c {
			sess.active = nil
		}
		sess.mu.Unlock()
	}()
	writerWG.Add(1)
	go func() { defer writerWG.Done(); c.writer() }()

	c.log.Info("bridge session started", "session_id", sess.id, "resume_after", c.ack.Load())
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(dead))
		select {
		case <-c.done:
			r, _ := c.reason.Load().(string)
			c.log.Info("bridge connection closed", "reason", r)
			return
		default:
		}
		f, raw, err := readFrame(br, l.cfg.MaxFrameBytes)
		if err != nil {
			select {
			case <-c.done:
				r, _ := c.reason.Load().(string)
				c.log.Info("bridge connection closed", "reason", r)
				return
			default:
			}
			c.fail(err)
			c.stop(err.Error())
			return
		}
		if err := c.process(sess, f, raw, helloSeq); err != nil {
			c.fail(err)
			c.stop(err.Error())
			return
		}
	}
}

// frameError is a protocol failure: reason labels the metric, code goes back to the bridge.
type frameError struct {
	reason string
	code   bridgev1.ErrorCode
	msg    string
	seq    uint64
}

func (e *frameError) Error() string { return e.msg }

func (c *conn) fail(err error) {
	var fe *frameError
	var tooLarge *protodelim.SizeTooLargeError
	switch {
	case errors.As(err, &fe):
	case errors.As(err, &tooLarge):
		fe = &frameError{reason: "oversized", code: bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME,
			msg: fmt.Sprintf("frame of %d bytes exceeds the %d-byte limit", tooLarge.Size, c.l.cfg.MaxFrameBytes)}
	case errors.Is(err, io.EOF):
		c.log.Info("bridge disconnected")
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.l.m.BridgeFrameErrors.WithLabelValues("heartbeat_timeout").Inc()
		c.log.Warn("bridge connection dead: no frame for three heartbeat intervals")
		return
	case errors.Is(err, io.ErrUnexpectedEOF):
		c.l.m.BridgeFrameErrors.WithLabelValues("truncated").Inc()
		c.log.Warn("bridge connection closed in the middle of a frame")
		return
	default:
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
			c.l.m.BridgeFrameErrors.WithLabelValues("io").Inc()
			c.log.Warn("bridge connection I/O error", "err", err)
			return
		}
		fe = &frameError{reason: "malformed", code: bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, msg: "malformed frame: " + err.Error()}
	}
	c.l.m.BridgeFrameErrors.WithLabelValues(fe.reason).Inc()
	c.log.Warn("closing bridge connection", "reason", fe.reason, "detail", fe.msg, "frame_sequence", fe.seq)
	f := &bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: fe.code, Message: fe.msg, FrameSequence: fe.seq}}}
	c.lastErr.Store(f)
	c.send(f)
}

func (c *conn) pendingError() *bridgev1.Frame {
	f, _ := c.lastErr.Load().(*bridgev1.Frame)
	return f
}

func (c *conn) writeDirect(f *bridgev1.Frame) {
	if f == nil {
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = protodelim.MarshalTo(c.nc, f)
}

// ReadFrame decodes one varint-length-delimited frame; a frame over maxBytes is an error
// (*protodelim.SizeTooLargeError) and nothing beyond its length prefix is read.
func ReadFrame(br *bufio.Reader, maxBytes int) (*bridgev1.Frame, error) {
	f, _, err := readFrame(br, maxBytes)
	return f, err
}

// readFrame also returns the frame's bytes (a fresh buffer the caller may keep).
func readFrame(br *bufio.Reader, maxBytes int) (*bridgev1.Frame, []byte, error) {
	size, err := binary.ReadUvarint(br)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, io.ErrUnexpectedEOF
		}
		return nil, nil, fmt.Errorf("frame length prefix: %w", err)
	}
	if size > uint64(maxBytes) {
		return nil, nil, &protodelim.SizeTooLargeError{Size: size, MaxSize: uint64(maxBytes)}
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(br, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, nil, err
	}
	if f, _, ok := decodeTicksFrame(buf); ok {
		return f, buf, nil
	}
	f := &bridgev1.Frame{}
	if err := proto.Unmarshal(buf, f); err != nil {
		return nil, nil, err
	}
	return f, buf, nil
}

// ticksBytes finds the encoded TickBatch (field 14) inside a frame's bytes.
func ticksBytes(frame []byte) []byte {
	var found []byte
	for len(frame) > 0 {
		num, typ, n := protowire.ConsumeTag(frame)
		if n < 0 {
			return nil
		}
		frame = frame[n:]
		if num == 14 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(frame)
			if m < 0 {
				return nil
			}
			// A repeated field 14 would be merged by the decoder: only a single occurrence is reusable.
			if found != nil {
				return nil
			}
			found = v
			frame = frame[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, frame)
		if m < 0 {
			return nil
		}
		frame = frame[m:]
	}
	return found
}

func (c *conn) handshake(br *bufio.Reader, dead time.Duration) (*session, uint64, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(dead))
	select {
	case <-c.done:
		return nil, 0, net.ErrClosed
	default:
	}
	f, err := ReadFrame(br, c.l.cfg.MaxFrameBytes)
	if err != nil {
		return nil, 0, err
	}
	h := f.GetHello()
	switch {
	case h == nil:
		return nil, 0, &frameError{"protocol", bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, "the first frame must be Hello", f.Sequence}
	case h.Channel != bridgev1.Channel_CHANNEL_MARKET_DATA:
		return nil, 0, &frameError{"protocol", bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION,
			fmt.Sprintf("this is the collector: Hello.channel must be CHANNEL_MARKET_DATA, got %v", h.Channel), f.Sequence}
	case h.ApiVersion != APIVersion:
		return nil, 0, &frameError{"unsupported_version", bridgev1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION,
			fmt.Sprintf("bridge api_version %d is not supported (want %d)", h.ApiVersion, APIVersion), f.Sequence}
	}
	c.l.m.BridgeFrames.WithLabelValues("hello").Inc()
	sess := c.l.session(h.SessionId)
	// One connection per session: a reconnect replaces a half-dead predecessor, which must finish
	// processing before resume_after is read, so nothing is processed twice.
	sess.mu.Lock()
	old := sess.active
	sess.active = c
	sess.mu.Unlock()
	if old != nil {
		old.stop("replaced by a new connection of the same session")
		<-old.finished
	}
	sess.mu.Lock()
	resume := sess.lastSeq
	if f.Sequence == resume+1 {
		// Hello consumed the next sequence and nothing is pending: it counts as processed.
		sess.lastSeq = f.Sequence
	}
	c.ack.Store(sess.lastSeq)
	sess.mu.Unlock()
	c.log = c.log.With("session_id", h.SessionId)
	c.log.Info("bridge hello", "bridge_version", h.BridgeVersion, "terminal", h.TerminalName, "build", h.TerminalBuild,
		"server", h.Server, "account", h.AccountLogin, "trade_mode", h.TradeMode.String())
	c.out <- &bridgev1.Frame{Ack: c.ack.Load(), Body: &bridgev1.Frame_Welcome{Welcome: &bridgev1.Welcome{
		ServerVersion: c.l.cfg.ServerVersion, ResumeAfter: resume, HeartbeatIntervalMs: uint32(c.l.cfg.HeartbeatInterval.Milliseconds())}}}
	return sess, f.Sequence, nil
}

func (c *conn) process(sess *session, f *bridgev1.Frame, raw []byte, helloSeq uint64) error {
	l := c.l
	recvUs := time.Now().UnixMicro()
	seq := f.Sequence
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if seq != 0 {
		if seq <= sess.lastSeq {
			l.m.BridgeDuplicates.Inc()
			return nil
		}
		if sess.lastSeq == 0 && seq > 1 {
			// No history for this session (a collector restarted without a state file): what came
			// before is unknown, not missing.
			c.log.Info("bridge session continues without collector state", "first_sequence", seq)
		} else if seq > sess.lastSeq+1 {
			missing := seq - sess.lastSeq - 1
			if helloSeq > sess.lastSeq && helloSeq < seq {
				missing-- // the Hello of this connection holds one of the numbers
			}
			if missing > 0 {
				l.m.BridgeSequenceGaps.Inc()
				l.m.BridgeGapFrames.Add(float64(missing))
				c.log.Warn("bridge frame sequence gap", "after", sess.lastSeq, "got", seq, "missing", missing)
			}
		}
	}
	switch b := f.Body.(type) {
	case *bridgev1.Frame_Ticks:
		l.m.BridgeFrames.WithLabelValues("ticks").Inc()
		hops := make([]*typesv1.HopStamp, 0, 3)
		if f.SentTimeUs > 0 {
			hops = append(hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_BRIDGE_SEND, TimeUs: f.SentTimeUs})
			if d := recvUs - f.SentTimeUs; d >= 0 {
				l.m.HopLatency.WithLabelValues("bridge_to_collector").Observe(float64(d) / 1e6)
			}
		}
		hops = append(hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_COLLECTOR_RECEIVE, TimeUs: recvUs})
		res := sess.src.TicksRaw(b.Ticks, ticksBytes(raw), hops)
		if res.RejectedTotal > 0 && len(res.Rejected) > 0 {
			r := res.Rejected[0]
			c.send(&bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: bridgev1.ErrorCode_ERROR_CODE_REJECTED,
				Message: fmt.Sprintf("%d of %d ticks of %s rejected; first at index %d: %s", res.RejectedTotal,
					len(b.Ticks.GetTimeMsc()), b.Ticks.GetSymbol(), r.Index, r.Detail), FrameSequence: seq}}})
		}
	case *bridgev1.Frame_SymbolInfo:
		l.m.BridgeFrames.WithLabelValues("symbol_info").Inc()
		if err := sess.src.Announce(b.SymbolInfo); err != nil {
			c.send(&bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: bridgev1.ErrorCode_ERROR_CODE_REJECTED, Message: err.Error(), FrameSequence: seq}}})
			c.log.Warn("symbol info rejected", "err", err)
		}
	case *bridgev1.Frame_Heartbeat:
		l.m.BridgeFrames.WithLabelValues("heartbeat").Inc()
		c.echo.Store(b.Heartbeat.TimeUs)
		if e := b.Heartbeat.EchoTimeUs; e > 0 && recvUs >= e {
			l.m.BridgeHeartbeatRTT.Observe(float64(recvUs-e) / 1e6)
		}
	case *bridgev1.Frame_Error:
		l.m.BridgeFrames.WithLabelValues("error").Inc()
		c.log.Warn("bridge reported an error", "code", b.Error.Code.String(), "message", b.Error.Message, "frame_sequence", b.Error.FrameSequence)
	case *bridgev1.Frame_Hello:
		return &frameError{"protocol", bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, "second Hello on one connection", seq}
	case nil:
		return &frameError{"malformed", bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, "frame without a body", seq}
	default:
		l.m.BridgeFrames.WithLabelValues("unexpected").Inc()
		c.send(&bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: bridgev1.ErrorCode_ERROR_CODE_REJECTED,
			Message: fmt.Sprintf("the collector does not take %T frames on the market-data channel", b), FrameSequence: seq}}})
	}
	if seq != 0 {
		sess.lastSeq = seq
		c.ack.Store(seq)
	}
	return nil
}

// writer sends Welcome and errors as they come, and heartbeats carrying the cumulative ack: at
// least once per heartbeat interval, and every AckInterval while the ack moves.
func (c *conn) writer() {
	l := c.l
	bw := bufio.NewWriterSize(c.nc, 16<<10)
	tick := time.NewTicker(min(l.cfg.AckInterval, l.cfg.HeartbeatInterval))
	defer tick.Stop()
	var sentAck uint64
	lastHB := time.Now()
	write := func(f *bridgev1.Frame) bool {
		if f.Body != nil {
			if _, isHB := f.Body.(*bridgev1.Frame_Heartbeat); !isHB {
				c.seq++
				f.Sequence = c.seq
			}
		}
		f.Ack = c.ack.Load()
		f.SentTimeUs = time.Now().UnixMicro()
		select {
		case <-c.done:
		default:
			_ = c.nc.SetWriteDeadline(time.Now().Add(l.cfg.HeartbeatInterval * 3))
		}
		if _, err := protodelim.MarshalTo(bw, f); err != nil {
			return false
		}
		if err := bw.Flush(); err != nil {
			c.stop("write failed: " + err.Error())
			return false
		}
		sentAck = f.Ack
		return true
	}
	for {
		select {
		case f := <-c.out:
			if !write(f) {
				return
			}
		case now := <-tick.C:
			if ack := c.ack.Load(); ack != sentAck || now.Sub(lastHB) >= l.cfg.HeartbeatInterval {
				lastHB = now
				if !write(&bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: now.UnixMicro(), EchoTimeUs: c.echo.Load()}}}) {
					return
				}
			}
		case <-c.done:
			// Flush what is queued (a final error frame) before the socket closes, briefly.
			_ = c.nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			for {
				select {
				case f := <-c.out:
					if !write(f) {
						return
					}
				default:
					return
				}
			}
		}
	}
}
