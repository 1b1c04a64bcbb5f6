// Command kairos-predict-load drives kairos-inference's StreamPredict from Go, as the collector's
// link (predictlink) does in production, for bench/inference.py. The benchmark builds the requests
// (real bars and ticks) and writes them serialized, one file per stream; this program replays them
// and prints one JSON line of results. A Go client costs the shared machine a fraction of what a
// Python grpc.aio client does (measured: 45% of a core for the throughput run's load), so the
// figures measure the server, not its load generator.
//
// Each file holds StreamPredictRequest messages, each preceded by its length as a uvarint. The first
// --warm of every file are sent one at a time, each awaited (the symbols' windows fill), then:
//
//   - --mode throughput: every stream on its own connection (to one address, SO_REUSEPORT hashes
//     each onto a worker; to the workers' own addresses, stream k goes to worker k modulo their
//     number) writes with up to --inflight requests unanswered; predictions are counted over
//     --seconds, starting --settle after all streams are warm. Prints predictions_per_s.
//   - --mode latency: one stream; request i leaves at start + i/--rate (open loop, paced by
//     nanosleep on a locked thread), and its latency is send to response. Prints the p50/p99 of all
//     responses and of those that carried predictions, after the first tenth.
//
// The bearer token comes from KAIROS_INFERENCE_TOKEN (never argv).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
)

// rawCodec sends a request's bytes as they are and hands a response's bytes back unparsed: the load
// generator marshals nothing and decodes only what it counts (scan), so its CPU stays off the
// server's. The wire format is protobuf's, as the server expects ("proto").
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// response is what the load generator reads of a StreamPredictResponse.
type response struct {
	requestID   uint64
	predictions int
	rejections  int
}

// scan reads a serialized StreamPredictResponse's request_id (1) and counts its predictions (2) and
// rejections (3) without decoding them.
func scan(b []byte) (response, error) {
	var r response
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return r, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return r, protowire.ParseError(m)
			}
			r.requestID, b = v, b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return r, protowire.ParseError(m)
		}
		switch num {
		case 2:
			r.predictions++
		case 3:
			r.rejections++
		}
		b = b[m:]
	}
	return r, nil
}

var streamDesc = &grpc.StreamDesc{StreamName: "StreamPredict", ServerStreams: true, ClientStreams: true}

const streamMethod = "/kairos.inference.v1.InferenceService/StreamPredict"

func main() {
	addr := flag.String("addr", "", "kairos-inference address (host:port); several, comma-separated (the workers' own, --worker-addrs): stream k goes to the k-th modulo their number")
	files := flag.String("requests", "", "comma-separated request files, one stream each")
	warm := flag.Int("warm", 0, "requests at the head of each file sent one at a time before measuring")
	mode := flag.String("mode", "throughput", "throughput or latency")
	seconds := flag.Float64("seconds", 4, "measurement window (throughput) or duration (latency)")
	settle := flag.Float64("settle", 0.5, "seconds between all streams warm and the window (throughput)")
	inflight := flag.Int("inflight", 8, "unanswered requests per stream (throughput)")
	rate := flag.Float64("rate", 1000, "requests per second (latency)")
	flag.Parse()
	res, err := run(*addr, strings.Split(*files, ","), *warm, *mode, *seconds, *settle, *inflight, *rate)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kairos-predict-load:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// request is one StreamPredictRequest, serialized, and its id.
type request struct {
	id  uint64
	raw []byte
}

// readRequests reads one file of uvarint-length-prefixed StreamPredictRequests (each parsed once,
// to check it and learn its id).
func readRequests(path string) ([]request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var out []request
	for {
		n, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: request %d: %w", path, len(out)+1, err)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("%s: request %d: %w", path, len(out)+1, err)
		}
		m := &inferv1.StreamPredictRequest{}
		if err := proto.Unmarshal(buf, m); err != nil {
			return nil, fmt.Errorf("%s: request %d: %w", path, len(out)+1, err)
		}
		out = append(out, request{id: m.GetRequestId(), raw: buf})
	}
}

type stream struct {
	conn *grpc.ClientConn
	call grpc.ClientStream
	reqs []request
}

func (s *stream) send(r request) error { return s.call.SendMsg(&r.raw) }

func (s *stream) recv() (response, error) {
	var b []byte
	if err := s.call.RecvMsg(&b); err != nil {
		return response{}, err
	}
	return scan(b)
}

// open connects one stream on a connection of its own and sends its first warm requests, each awaited.
func open(ctx context.Context, addr string, reqs []request, warm int) (*stream, error) {
	if warm > len(reqs) {
		return nil, fmt.Errorf("%d warm-up requests, the file has %d", warm, len(reqs))
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	call, err := conn.NewStream(ctx, streamDesc, streamMethod, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &stream{conn: conn, call: call, reqs: reqs[warm:]}
	for _, m := range reqs[:warm] {
		if err := s.send(m); err != nil {
			conn.Close()
			return nil, fmt.Errorf("warm-up send: %w", err)
		}
		r, err := s.recv()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		if r.rejections > 0 {
			conn.Close()
			return nil, fmt.Errorf("warm-up request %d: %d inputs refused", m.id, r.rejections)
		}
	}
	return s, nil
}

func run(addr string, files []string, warm int, mode string, seconds, settle float64, inflight int, rate float64) (map[string]float64, error) {
	if addr == "" || len(files) == 0 || files[0] == "" {
		return nil, errors.New("--addr and --requests are required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if tok := os.Getenv("KAIROS_INFERENCE_TOKEN"); tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	var streams []*stream
	defer func() {
		for _, s := range streams {
			s.conn.Close()
		}
	}()
	addrs := strings.Split(addr, ",")
	for k, f := range files {
		reqs, err := readRequests(f)
		if err != nil {
			return nil, err
		}
		s, err := open(ctx, addrs[k%len(addrs)], reqs, warm)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		streams = append(streams, s)
	}
	switch mode {
	case "throughput":
		// One P: the load's goroutines take turns instead of waking a second thread per message,
		// which cut this process's CPU in the window by a fifth (0.28 → 0.21-0.25 cores).
		runtime.GOMAXPROCS(1)
		return throughput(streams, seconds, settle, inflight)
	case "latency":
		if len(streams) != 1 {
			return nil, errors.New("latency mode takes one stream")
		}
		return latency(streams[0], seconds, rate)
	}
	return nil, fmt.Errorf("unknown --mode %q", mode)
}

func throughput(streams []*stream, seconds, settle float64, inflight int) (map[string]float64, error) {
	start := time.Now().Add(time.Duration(settle * float64(time.Second)))
	stop := start.Add(time.Duration(seconds * float64(time.Second)))
	var (
		counted atomic.Int64
		wg      sync.WaitGroup
		errs    = make(chan error, 2*len(streams))
	)
	for _, s := range streams {
		slots := make(chan struct{}, inflight)
		readerDone := make(chan struct{})
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			defer func() { _ = s.call.CloseSend() }()
			for _, m := range s.reqs {
				select {
				case slots <- struct{}{}:
				case <-readerDone: // the stream failed: the reader reported why
					return
				}
				if time.Now().After(stop) {
					return
				}
				if err := s.send(m); err != nil {
					errs <- fmt.Errorf("send: %w", err)
					return
				}
			}
			errs <- errors.New("the request file ran out before the window ended: write more requests")
		}()
		go func() { // reader
			defer wg.Done()
			defer close(readerDone)
			for {
				r, err := s.recv()
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					errs <- fmt.Errorf("receive: %w", err)
					return
				}
				<-slots
				if now := time.Now(); !now.Before(start) && !now.After(stop) {
					counted.Add(int64(r.predictions))
				}
			}
		}()
	}
	// This process's CPU over the window: what the load costs the machine the server runs on.
	cpu := make(chan float64, 1)
	go func() {
		time.Sleep(time.Until(start))
		c0 := cpuSeconds()
		time.Sleep(time.Until(stop))
		cpu <- (cpuSeconds() - c0) / seconds
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return map[string]float64{"predictions_per_s": float64(counted.Load()) / seconds, "streams": float64(len(streams)), "client_cpu_cores": <-cpu}, nil
}

// cpuSeconds is the user and system CPU time this process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK (linux/prctl.h).
const prSetTimerSlack = 29

func latency(s *stream, seconds, rate float64) (map[string]float64, error) {
	n := min(int(seconds*rate), len(s.reqs))
	sent := make([]time.Time, n)
	index := make(map[uint64]int, n)
	for i, m := range s.reqs[:n] {
		index[m.id] = i
	}
	var mu sync.Mutex
	errc := make(chan error, 1)
	go func() {
		// The pacer owns its thread and sleeps in nanosleep with a 1 ns timer slack: Go's timers
		// overshoot a sub-millisecond sleep when the process is idle.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
		t0 := time.Now()
		for i, m := range s.reqs[:n] {
			due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			for d := time.Until(due); d > 0; d = time.Until(due) {
				ts := syscall.NsecToTimespec(d.Nanoseconds())
				_ = syscall.Nanosleep(&ts, nil)
			}
			mu.Lock()
			sent[i] = time.Now()
			mu.Unlock()
			if err := s.send(m); err != nil {
				errc <- fmt.Errorf("send: %w", err)
				return
			}
		}
		errc <- s.call.CloseSend()
	}()
	var all, pred []float64
	for {
		r, err := s.recv()
		now := time.Now()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		i, ok := index[r.requestID]
		if !ok {
			return nil, fmt.Errorf("a response to request %d, which was not sent", r.requestID)
		}
		if r.rejections > 0 {
			return nil, fmt.Errorf("request %d: %d inputs refused", r.requestID, r.rejections)
		}
		mu.Lock()
		us := float64(now.Sub(sent[i]).Nanoseconds()) / 1e3
		mu.Unlock()
		if i < n/10 { // the first tenth settles
			continue
		}
		all = append(all, us)
		if r.predictions > 0 {
			pred = append(pred, us)
		}
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errors.New("no responses after the first tenth: nothing to report")
	}
	sort.Float64s(all)
	res := map[string]float64{
		"stream_latency_us_p50":  pct(all, 50),
		"stream_latency_us_p99":  pct(all, 99),
		"stream_latency_samples": float64(len(all)),
	}
	if len(pred) > 0 { // an echo server predicts nothing
		sort.Float64s(pred)
		res["stream_latency_pred_us_p50"], res["stream_latency_pred_us_p99"] = pct(pred, 50), pct(pred, 99)
	}
	return res, nil
}

// pct is the q-th percentile of sorted xs, interpolated linearly (numpy's default).
func pct(xs []float64, q float64) float64 {
	pos := q / 100 * float64(len(xs)-1)
	lo := int(pos)
	if lo+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	return xs[lo] + (pos-float64(lo))*(xs[lo+1]-xs[lo])
}
