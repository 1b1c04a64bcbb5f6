"""`make wirecheck`: the wire contract cross-checked in three languages on real data.

1. read real EURUSD ticks from ``shared/data`` (the repository's test data) with the one market-data
   reader, ``kairos.training.data.read_ticks``;
2. encode them as the bridge DLL sends them to the collector: a Hello, the symbol's
   SymbolInfo, then TickBatch frames of at most 256 ticks (the DLL's nanopb bound), each frame
   varint-length-delimited, with heartbeats in between;
3. decode that stream in Python (protobuf/upb), Go (google.golang.org/protobuf: the collector's
   codec) and C (nanopb: the DLL's codec), and check that all three report the same frames, ticks,
   time and sequence ranges and prices, and re-encode every frame to the identical bytes.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import proto

from kairos.bridge.v1 import bridge_pb2
from kairos.marketdata.v1 import marketdata_pb2
from kairos.training.data import DataError, read_ticks

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TICKS = REPO.parent / "shared" / "data" / "eurusd-ticks-2020-01-01.csv"
BATCH_MAX = 256  # kairos.marketdata.v1.TickBatch.* max_count in marketdata.options
HEARTBEAT_EVERY = 8  # batches between heartbeats


@dataclass(frozen=True)
class QuoteTick:
    time_msc: int
    bid: float
    ask: float


def as_quote_ticks(ticks: Any) -> list[QuoteTick]:
    """The rows of ``kairos.training.data.read_ticks`` as QuoteTicks."""
    return [
        QuoteTick(int(t), float(b), float(a))
        for t, b, a in zip(ticks["time_msc"], ticks["bid"], ticks["ask"], strict=True)
    ]


def eurusd_info() -> marketdata_pb2.SymbolInfo:
    return marketdata_pb2.SymbolInfo(
        symbol="EURUSD",
        digits=5,
        point=1e-5,
        contract_size=100_000,
        volume_min=0.01,
        volume_max=500,
        volume_step=0.01,
        tick_size=1e-5,
        tick_value=1,
        currency_base="EUR",
        currency_profit="USD",
        description="Euro vs US Dollar",
    )


def encode_stream(ticks: list[QuoteTick], info: marketdata_pb2.SymbolInfo) -> bytes:
    """The market-data channel as the DLL writes it: Hello, SymbolInfo, then batches and heartbeats."""
    frames: list[bridge_pb2.Frame] = []

    sequence = itertools.count(1)
    sent_time_us = ticks[0].time_msc * 1000

    def add(**body: Any) -> None:
        # Heartbeats carry sequence 0: they are never retransmitted (bridge.proto, Frame.sequence).
        seq = 0 if "heartbeat" in body else next(sequence)
        frames.append(bridge_pb2.Frame(sequence=seq, sent_time_us=sent_time_us, **body))

    add(
        hello=bridge_pb2.Hello(
            api_version=1,
            bridge_version="demo",
            channel=bridge_pb2.CHANNEL_MARKET_DATA,
            session_id=2020_01_01,
            terminal_name="kairos demo replay",
            ea_symbol=info.symbol,
        )
    )
    add(symbol_info=info)
    for n, start in enumerate(range(0, len(ticks), BATCH_MAX), start=1):
        chunk = ticks[start : start + BATCH_MAX]
        batch = marketdata_pb2.TickBatch(
            symbol=info.symbol,
            time_msc=[t.time_msc for t in chunk],
            bid=[t.bid for t in chunk],
            ask=[t.ask for t in chunk],
            flags=[6] * len(chunk),  # TICK_FLAG_BID | TICK_FLAG_ASK
            sequence=range(start + 1, start + len(chunk) + 1),
        )
        add(ticks=batch)
        if n % HEARTBEAT_EVERY == 0:
            add(heartbeat=bridge_pb2.Heartbeat(time_us=chunk[-1].time_msc * 1000))
    out = io.BytesIO()
    for frame in frames:
        proto.serialize_length_prefixed(frame, out)
    return out.getvalue()


def summarize(stream: bytes) -> dict[str, Any]:
    """The same summary the Go and C kairos-framecat tools print."""
    bodies: Counter[str] = Counter()
    points: dict[str, float] = {}
    symbols: dict[str, dict[str, int]] = {}
    frames = ticks = last_seq = 0
    reader = io.BytesIO(stream)
    while (frame := proto.parse_length_prefixed(bridge_pb2.Frame, reader)) is not None:
        frames += 1
        last_seq = frame.sequence
        body = frame.WhichOneof("body")
        bodies[str(body)] += 1
        if body == "symbol_info":
            points[frame.symbol_info.symbol] = frame.symbol_info.point
        elif body == "ticks":
            b = frame.ticks
            p = points[b.symbol]
            s = symbols.setdefault(
                b.symbol,
                {
                    "ticks": 0,
                    "first_time_msc": b.time_msc[0],
                    "first_sequence": b.sequence[0],
                    "min_bid_points": sys.maxsize,
                    "max_ask_points": -sys.maxsize - 1,
                    "spread_points_sum": 0,
                },
            )
            for bid, ask in zip(b.bid, b.ask, strict=True):
                bid_pts, ask_pts = math.floor(bid / p + 0.5), math.floor(ask / p + 0.5)
                s["min_bid_points"] = min(s["min_bid_points"], bid_pts)
                s["max_ask_points"] = max(s["max_ask_points"], ask_pts)
                s["spread_points_sum"] += ask_pts - bid_pts
            s["ticks"] += len(b.time_msc)
            s["last_time_msc"], s["last_sequence"] = b.time_msc[-1], b.sequence[-1]
            ticks += len(b.time_msc)
    return {
        "frames": frames,
        "bodies": dict(bodies),
        "ticks": ticks,
        "last_frame_sequence": last_seq,
        "symbols": symbols,
    }


def run_framecat(tool: Path, frames: Path, reencoded: Path) -> dict[str, Any]:
    if not tool.exists():
        raise SystemExit(f"wirecheck: {tool} is missing; run `make wirecheck` (it builds the Go and C tools)")
    out = subprocess.run(
        [str(tool), "-o", str(reencoded), str(frames)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"wirecheck: {tool} failed: {out.stderr.strip()}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kairos.wirecheck", description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=Path, default=DEFAULT_TICKS, help="tick file (default: %(default)s)")
    ap.add_argument("--build-dir", type=Path, default=REPO / "build" / "wirecheck")
    ap.add_argument("--framecat-go", type=Path, required=True, help="the Go kairos-framecat binary")
    ap.add_argument("--framecat-c", type=Path, required=True, help="the C (nanopb) kairos-framecat binary")
    args = ap.parse_args(argv)

    print("Kairos wire check: the bridge contract on real ticks, in Python, Go and C (nanopb).\n")

    if not args.ticks.exists():
        print(f"wirecheck: tick file {args.ticks} not found (pass --ticks FILE)", file=sys.stderr)
        return 1
    try:
        ticks = as_quote_ticks(read_ticks(str(args.ticks)))
    except DataError as e:
        print(f"wirecheck: {e}", file=sys.stderr)
        return 1
    args.build_dir.mkdir(parents=True, exist_ok=True)
    frames_path = args.build_dir / "eurusd-market-data.frames"
    t0 = time.perf_counter()
    stream = encode_stream(ticks, eurusd_info())
    frames_path.write_bytes(stream)
    print(f"1. read {len(ticks)} EURUSD ticks from {args.ticks}")
    print(
        f"2. Python encoded them as bridge frames: {frames_path} ({len(stream)} bytes,"
        f" {len(stream) / len(ticks):.1f} bytes/tick, {1e3 * (time.perf_counter() - t0):.0f} ms)"
    )

    results = {"python (protobuf/upb)": summarize(stream)}
    identical = {"python (protobuf/upb)": True}
    for label, tool in (
        ("go (google.golang.org/protobuf)", args.framecat_go),
        ("c (nanopb, as in the DLL)", args.framecat_c),
    ):
        reencoded = args.build_dir / f"reencoded-{label.split()[0]}.frames"
        results[label] = run_framecat(tool, frames_path, reencoded)
        identical[label] = reencoded.read_bytes() == stream

    print("3. decoded and re-encoded by each implementation:\n")
    header = ("decoder", "frames", "ticks", "first..last sequence", "spread sum (pts)", "re-encoded")
    print("   {:34} {:>7} {:>7} {:>22} {:>17}  {}".format(*header))
    for label, r in results.items():
        s = r["symbols"]["EURUSD"]
        seq = f"{s['first_sequence']}..{s['last_sequence']}"
        same = "identical" if identical[label] else "DIFFERENT"
        print(
            f"   {label:34} {r['frames']:>7} {r['ticks']:>7} {seq:>22} {s['spread_points_sum']:>17}  {same}"
        )
    reference = results["python (protobuf/upb)"]
    agree = all(r == reference for r in results.values()) and all(identical.values())
    lost = len(ticks) - reference["ticks"]
    print(f"\nticks read {len(ticks)}, ticks decoded {reference['ticks']}, lost {lost}")
    summary_path = args.build_dir / "summary.json"
    summary_path.write_text(json.dumps({"agree": agree, "lost": lost, "decoders": results}, indent=2))
    if not agree or lost:
        print("FAILED: the decoders disagree or ticks were lost; see", summary_path, file=sys.stderr)
        return 1
    print(
        f"OK: Python, Go and C agree on every frame and re-encode the stream byte for byte ({summary_path})."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
