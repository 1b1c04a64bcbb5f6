// Command kairos-collector-bench measures the collector end to end and writes flat JSON
// (bench/results/collector.json via `make bench`). Everything runs in this process on loopback: a
// real collector with its embedded NATS server, a test bridge on TCP, NATS and gRPC clients.
//
//   - ingest_ticks_per_s: one bridge TCP connection sending 100-tick frames of real EURUSD ticks as
//     fast as it can, timed until a NATS subscriber has received every frame (ingest_lost must be 0);
//   - nats_raw_msgs_per_s: the same TickBatch payloads published straight to the same embedded NATS
//     server and counted by a subscriber; ingest_vs_nats_raw is the ratio of messages per second
//     (one frame = one NATS message of the same payload). Ingest and raw rounds alternate (seven
//     each by default), and each figure is the best round, since the machine is shared; the median
//     of the per-round ratios (each ingest round against the raw round right after it) is reported
//     beside;
//   - ingest_cpu_us_per_frame / nats_raw_cpu_us_per_msg: the process's CPU time over a round per
//     frame or raw message (median of the rounds), and ingest_vs_nats_raw_cpu, their ratio: unlike
//     throughput, barely moved by the machine's load;
//   - ingest_allocs_per_frame / nats_raw_allocs_per_msg: the process's heap allocations over a round
//     per frame or raw message (median of the rounds), and ingest_bars_per_frame, the bars the
//     replay closes per 100-tick frame (M1..H1);
//   - subscribe_latency_us_p50/p99: bridge frame written -> gRPC Subscribe client receives it,
//     at 10,000 ticks/s (10-tick frames every millisecond); the round with the lowest p99 of three,
//     and the median round's p99 beside it.
//
// The replay is the file's quiet holiday (~26 ticks a minute: ~4.9 closed bars per frame, so ingest
// sends ~6 NATS messages per frame against raw's one); --time-compress N replays its ticks N times
// faster, N times as many ticks per bar, as a busier session would (10: ~0.5 bars per frame).
//
// The rounds are short (20,000 frames: ~0.1-0.3 s of ingest, ~0.05 s of raw NATS), so a scheduler
// hiccup on a shared machine moves a single round by 2x: --rounds (default 7) more of them, or
// --frames longer ones, steady the best-of and median figures.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/collector"
	"github.com/kairos-mt5/kairos/go/collector/config"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
)

// benchToken is the bearer token of the benchmark's collector (every gRPC call needs one).
const benchToken = "bench"

func main() {
	out := flag.String("out", "bench/results/collector.json", "output JSON file")
	frames := flag.Int("frames", 20000, "100-tick frames in each ingest round")
	latencySeconds := flag.Int("latency-seconds", 2, "duration of each latency round")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the whole run here")
	flag.StringVar(&ingestProfile, "ingest-cpuprofile", "",
		"write a CPU profile of each ingest round's timed part to this path with the round's number appended "+
			"(go tool pprof merges them: `go tool pprof bin prof.1 prof.2 ...`)")
	rounds := flag.Int("rounds", 7, "ingest rounds, each followed by a raw NATS round")
	flag.Int64Var(&timeCompress, "time-compress", 1,
		"replay the ticks' times N times faster: N times as many ticks per bar (a busier market than the quiet day the file holds)")
	flag.Parse()
	timeCompress = max(timeCompress, 1)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	err := run(*out, *frames, *latencySeconds, *rounds)
	if *memProfile != "" {
		if f, ferr := os.Create(*memProfile); ferr == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kairos-collector-bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func startCollector() (*collector.Service, context.CancelFunc, chan error, error) {
	cfg := config.Default()
	cfg.BridgeAddr, cfg.GRPCAddr, cfg.NATSAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.NATSInsecure = true // a throwaway loopback server of the bench's own
	cfg.Token = benchToken
	cfg.InferenceEndpoints = nil
	cfg.FutureTolerance = 100 * 365 * 24 * time.Hour // the replayed laps may run ahead of the real clock
	cfg.BridgeKey = benchKey                         // the bench measures the authenticated link, as deployed
	var logOut io.Writer = io.Discard
	if os.Getenv("KAIROS_BENCH_LOG") != "" {
		logOut = os.Stderr
	}
	svc, err := collector.New(cfg, slog.New(slog.NewJSONHandler(logOut, nil)))
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return svc, cancel, done, nil
}

// replay cuts n frames of 100 ticks from the real file, lap after lap, times shifted so they keep increasing.
// benchKey is the bench collector's bridge key (a fixed test key: nothing outside the process uses it).
var benchKey = []byte("kairos-collector-bench-bridge-key")

// ingestProfile, when set (--ingest-cpuprofile), is where each ingest round's timed part is profiled:
// the whole-run profile is mostly the setup (encoding the frames) and the raw rounds.
var ingestProfile string

// timeCompress divides the gaps between the replayed ticks (--time-compress): with 1, the file's quiet
// holiday closes ~4.9 bars (M1..H1) per 100 ticks; with 10, ~0.5, as a busy session would.
var timeCompress int64 = 1

func replay(symbol string, ticks []ticksdata.Tick, nFrames, perFrame int, seq0 uint64) []*mdv1.TickBatch {
	t0 := ticks[0].TimeMsc
	span := (ticks[len(ticks)-1].TimeMsc - t0 + 60_000) / timeCompress
	out := make([]*mdv1.TickBatch, 0, nFrames)
	k := 0
	seq := seq0
	for range nFrames {
		b := &mdv1.TickBatch{Symbol: symbol}
		for range perFrame {
			t := ticks[k%len(ticks)]
			lap := int64(k / len(ticks))
			b.TimeMsc = append(b.TimeMsc, t0+(t.TimeMsc-t0)/timeCompress+lap*span)
			b.Bid = append(b.Bid, t.Bid)
			b.Ask = append(b.Ask, t.Ask)
			b.Flags = append(b.Flags, 6)
			b.Sequence = append(b.Sequence, seq)
			seq++
			k++
		}
		out = append(out, b)
	}
	return out
}

func dialBridge(addr string, session uint64, symbol string) (net.Conn, *bufio.Writer, error) {
	info := ticksdata.EURUSD()
	info.Symbol = symbol
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	// The Challenge first: the Hello proves the bridge key over its nonce.
	br := bufio.NewReader(nc)
	challenge := &bridgev1.Frame{}
	if err := protodelim.UnmarshalFrom(br, challenge); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("reading the Challenge: %w", err)
	}
	hello := &bridgev1.Hello{ApiVersion: bridgelink.APIVersion, Channel: bridgev1.Channel_CHANNEL_MARKET_DATA, SessionId: session}
	if err := bridgelink.ProveHello(benchKey, challenge.GetChallenge().GetServerNonce(), hello); err != nil {
		nc.Close()
		return nil, nil, err
	}
	go func() { _, _ = io.Copy(io.Discard, br) }() // Welcome, heartbeats, acks
	w := bufio.NewWriterSize(nc, 256<<10)
	for _, f := range []*bridgev1.Frame{
		{Sequence: 1, Body: &bridgev1.Frame_Hello{Hello: hello}},
		{Sequence: 2, Body: &bridgev1.Frame_SymbolInfo{SymbolInfo: info}},
	} {
		if _, err := protodelim.MarshalTo(w, f); err != nil {
			return nil, nil, err
		}
	}
	return nc, w, w.Flush()
}

func countTicks(url, subject string, perMsg bool) (*nats.Conn, *atomic.Int64, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, err
	}
	var n atomic.Int64
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		if perMsg {
			n.Add(1)
			return
		}
		var b mdv1.TickBatch
		if proto.Unmarshal(m.Data, &b) == nil {
			n.Add(int64(len(b.TimeMsc)))
		}
	})
	if err != nil {
		return nil, nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return nc, &n, nc.Flush()
}

func waitCount(n *atomic.Int64, want int64, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for n.Load() < want {
		if time.Now().After(deadline) {
			return time.Now(), false
		}
		time.Sleep(50 * time.Microsecond)
	}
	return time.Now(), true
}

// The ingest and raw NATS rounds alternate so both see the same background load; each figure is the
// best of the rounds (the machine is shared, and throughput is only ever lowered by noise), with the
// median of the per-round ratios beside it. Each round starts after a forced garbage collection, so
// neither pays for the garbage of the setup before it (20,000 encoded frames).
func run(out string, nFrames, latencySeconds, rounds int) error {
	rounds = max(rounds, 1)
	ticks, err := ticksdata.Load()
	if err != nil {
		return err
	}
	svc, cancel, done, err := startCollector()
	if err != nil {
		return err
	}
	defer func() { cancel(); <-done }()
	res := map[string]any{}
	var bestIngest, bestRaw float64
	var lost int64
	var ingestAll, rawAll, ingestCPU, rawCPU, ingestAllocs, rawAllocs []float64
	bars0 := barsEmitted(svc)
	for r := range rounds {
		// Each round is a new bridge session on its own symbol, so bars and validation start fresh.
		symbol := fmt.Sprintf("EURUSD%d", r+1)
		ingest, l, encoded, err := ingestRound(svc, ticks, symbol, uint64(r+1), nFrames)
		if err != nil {
			return err
		}
		raw, err := rawRound(svc, encoded)
		if err != nil {
			return err
		}
		lost += l
		ingestAll, rawAll = append(ingestAll, round(ingest.perS)), append(rawAll, round(raw.perS))
		ingestCPU, rawCPU = append(ingestCPU, round3(ingest.cpuUs)), append(rawCPU, round3(raw.cpuUs))
		ingestAllocs, rawAllocs = append(ingestAllocs, round3(ingest.allocs)), append(rawAllocs, round3(raw.allocs))
		bestIngest, bestRaw = max(bestIngest, ingest.perS), max(bestRaw, raw.perS)
	}
	res["ingest_bars_per_frame"] = round3((barsEmitted(svc) - bars0) / float64(rounds*nFrames))
	res["replay_time_compress"] = timeCompress
	res["ingest_cpu_us_per_frame"] = median(ingestCPU)
	res["ingest_allocs_per_frame"] = median(ingestAllocs)
	res["nats_raw_allocs_per_msg"] = median(rawAllocs)
	res["nats_raw_cpu_us_per_msg"] = median(rawCPU)
	res["ingest_vs_nats_raw_cpu"] = round3(median(rawCPU) / median(ingestCPU))
	fmt.Fprintf(os.Stderr, "CPU µs per ingest frame %v; per raw NATS message %v\n", ingestCPU, rawCPU)
	res["ingest_ticks_per_s"] = round(bestIngest)
	res["ingest_ticks_per_round"] = nFrames * 100
	res["ingest_rounds"] = rounds
	res["ingest_ticks_per_s_all"] = ingestAll
	res["nats_raw_msgs_per_s_all"] = rawAll
	res["ingest_lost"] = lost
	res["nats_raw_msgs_per_s"] = round(bestRaw)
	res["nats_raw_ticks_per_s"] = round(bestRaw * 100)
	res["ingest_vs_nats_raw"] = round3(bestIngest / 100 / bestRaw)
	fmt.Fprintf(os.Stderr, "ingest ticks/s per round %v; raw NATS msgs/s per round %v\n", ingestAll, rawAll)
	var paired []float64
	for i := range ingestAll {
		paired = append(paired, ingestAll[i]/100/rawAll[i])
	}
	res["ingest_vs_nats_raw_paired_median"] = round3(median(paired))
	res["ingest_ticks_per_s_median"] = median(ingestAll)
	res["nats_raw_msgs_per_s_median"] = median(rawAll)

	// Latency: 10-tick frames every millisecond (10k ticks/s) -> gRPC subscriber; best p99 of the rounds.
	var lats []map[string]any
	for r := range 3 {
		lat, err := latency(svc, ticks, fmt.Sprintf("LAT%d", r+1), uint64(100+r), latencySeconds)
		if err != nil {
			return err
		}
		lats = append(lats, lat)
	}
	sort.Slice(lats, func(i, j int) bool {
		return lats[i]["subscribe_latency_us_p99"].(float64) < lats[j]["subscribe_latency_us_p99"].(float64)
	})
	for k, v := range lats[0] {
		res[k] = v
	}
	res["subscribe_latency_us_p99_median_round"] = lats[len(lats)/2]["subscribe_latency_us_p99"]
	res["subscribe_latency_rounds"] = len(lats)
	res["machine_cpu_model"] = cpuModel()
	res["machine_cores"] = runtime.NumCPU()
	res["go_version"] = runtime.Version()
	data, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(out, append(data, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println(string(data))
	return nil
}

// ingestRound: bridge TCP -> validation, bars, fan-out -> NATS subscriber. It returns ticks/s, ticks
// lost, and the batches' encodings for the raw NATS round.
func ingestRound(svc *collector.Service, ticks []ticksdata.Tick, symbol string, session uint64, nFrames int) (roundResult, int64, [][]byte, error) {
	batches := replay(symbol, ticks, nFrames, 100, 1)
	encoded := make([][]byte, len(batches))
	var wire []byte
	for i, b := range batches {
		encoded[i], _ = proto.Marshal(b)
		wire, _ = appendFrame(wire, &bridgev1.Frame{Sequence: uint64(3 + i), SentTimeUs: time.Now().UnixMicro(), Body: &bridgev1.Frame_Ticks{Ticks: b}})
	}
	// Both rounds count messages without decoding them, so the subscriber costs the same in each;
	// every 100-tick frame passes validation whole and becomes one NATS message.
	sub, got, err := countTicks(svc.NATSURL(), "kairos.md."+symbol, true)
	if err != nil {
		return roundResult{}, 0, nil, err
	}
	defer sub.Close()
	before := testutil.ToFloat64(svc.Metrics.TicksAccepted.WithLabelValues("bridge"))
	conn, w, err := dialBridge(svc.BridgeAddr(), session, symbol)
	if err != nil {
		return roundResult{}, 0, nil, err
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // the session is set up before the clock starts
	runtime.GC()
	stopProfile := startRoundProfile(session)
	sent := int64(nFrames * 100)
	a0 := allocs()
	c0 := cpuTime()
	t0 := time.Now()
	if _, err := w.Write(wire); err != nil {
		return roundResult{}, 0, nil, err
	}
	if err := w.Flush(); err != nil {
		return roundResult{}, 0, nil, err
	}
	t1, ok := waitCount(got, int64(nFrames), 60*time.Second)
	cpu := cpuTime() - c0
	a := allocs() - a0
	stopProfile()
	if !ok {
		fmt.Fprintf(os.Stderr, "ingest: only %d of %d frames arrived\n", got.Load(), nFrames)
	}
	accepted := int64(testutil.ToFloat64(svc.Metrics.TicksAccepted.WithLabelValues("bridge")) - before)
	return roundResult{float64(sent) / t1.Sub(t0).Seconds(), cpu.Seconds() * 1e6 / float64(nFrames), float64(a) / float64(nFrames)},
		sent - min(accepted, got.Load()*100), encoded, nil
}

// startRoundProfile starts the CPU profile of ingest round n when --ingest-cpuprofile is set (and no
// whole-run profile is running); the function it returns stops it.
func startRoundProfile(n uint64) func() {
	if ingestProfile == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", ingestProfile, n))
	if err != nil {
		return func() {}
	}
	if pprof.StartCPUProfile(f) != nil {
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// barsEmitted is the collector's count of closed bars so far, every period of the default config.
func barsEmitted(svc *collector.Service) float64 {
	var n float64
	for _, tf := range []string{"M1", "M5", "M15", "H1"} {
		n += testutil.ToFloat64(svc.Metrics.BarsEmitted.WithLabelValues(tf))
	}
	return n
}

// roundResult is a round's throughput and the process CPU time (every goroutine: the collector,
// the NATS server, the benchmark's clients) it took per frame or message, in µs. CPU time barely
// moves with the machine's load, where throughput halves: it is the figure to compare changes by.
type roundResult struct {
	perS, cpuUs, allocs float64
}

// allocs is the process's heap allocations so far (every goroutine, as cpuTime).
func allocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawRound publishes the same payloads straight to the same server and counts them at a subscriber.
func rawRound(svc *collector.Service, encoded [][]byte) (roundResult, error) {
	rawSub, rawGot, err := countTicks(svc.NATSURL(), "kairos.bench.raw", true)
	if err != nil {
		return roundResult{}, err
	}
	defer rawSub.Close()
	pub, err := nats.Connect(svc.NATSURL())
	if err != nil {
		return roundResult{}, err
	}
	defer pub.Close()
	runtime.GC()
	a0 := allocs()
	c0 := cpuTime()
	t0 := time.Now()
	for _, p := range encoded {
		if err := pub.Publish("kairos.bench.raw", p); err != nil {
			return roundResult{}, err
		}
	}
	_ = pub.Flush()
	t1, _ := waitCount(rawGot, int64(len(encoded)), 60*time.Second)
	cpu := cpuTime() - c0
	a := allocs() - a0
	return roundResult{float64(rawGot.Load()) / t1.Sub(t0).Seconds(), cpu.Seconds() * 1e6 / float64(len(encoded)), float64(a) / float64(len(encoded))}, nil
}

func latency(svc *collector.Service, ticks []ticksdata.Tick, symbol string, session uint64, seconds int) (map[string]any, error) {
	cc, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(grpcauth.Bearer(benchToken, false)))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := collectorv1.NewMarketDataServiceClient(cc).Subscribe(ctx, &collectorv1.SubscribeRequest{Symbols: []string{symbol}, Ticks: true})
	if err != nil {
		return nil, err
	}
	n := seconds * 1000
	// A new session and symbol: sequences and bars start fresh.
	batches := replay(symbol, ticks, n, 10, 1)
	sentAt := make([]int64, n)
	recvAt := make([]int64, n)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		got := 0
		for got < n {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			if b := ev.GetTicks(); b != nil && len(b.Sequence) > 0 {
				now := time.Now().UnixNano()
				i := int((b.Sequence[0] - 1) / 10)
				if i >= 0 && i < n {
					recvAt[i] = now
					got++
				}
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the subscription is registered before data flows
	conn, w, err := dialBridge(svc.BridgeAddr(), session, symbol)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	frames := make([][]byte, n)
	for i, b := range batches {
		frames[i], _ = appendFrame(nil, &bridgev1.Frame{Sequence: uint64(3 + i), Body: &bridgev1.Frame_Ticks{Ticks: b}})
	}
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		sentAt[i] = time.Now().UnixNano()
		if _, err := w.Write(frames[i]); err != nil {
			return nil, err
		}
		if err := w.Flush(); err != nil {
			return nil, err
		}
	}
	select {
	case <-recvDone:
	case <-time.After(10 * time.Second):
	}
	cancel()
	<-recvDone
	var us []float64
	for i := range n {
		if recvAt[i] > 0 {
			us = append(us, float64(recvAt[i]-sentAt[i])/1e3)
		}
	}
	if len(us) == 0 {
		return nil, fmt.Errorf("latency run: the subscriber received nothing")
	}
	sort.Float64s(us)
	q := func(p float64) float64 { return round3(us[min(len(us)-1, int(p*float64(len(us))))]) }
	return map[string]any{
		"subscribe_latency_us_p50": q(0.50), "subscribe_latency_us_p99": q(0.99), "subscribe_latency_us_max": round3(us[len(us)-1]),
		"subscribe_latency_frames": len(us), "subscribe_latency_ticks_per_s": 10000,
	}, nil
}

// appendFrame appends the varint length prefix and the frame, as the bridge writes them.
func appendFrame(buf []byte, f *bridgev1.Frame) ([]byte, error) {
	msg, err := proto.Marshal(f)
	if err != nil {
		return buf, err
	}
	buf = protowire.AppendVarint(buf, uint64(len(msg)))
	return append(buf, msg...), nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func round(x float64) float64  { return float64(int64(x + 0.5)) }
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.Index(line, ":"); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return runtime.GOARCH
}
