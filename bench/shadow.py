"""Shadow evaluation overhead (issue #16): stream latency of the real kairos-inference process with no
shadow model and with two (``--shadow-models``), measured as bench/inference.py measures it.

One stream, 5,000 ticks/s offered (1,000 messages/s of one real EURUSD tick for each of 5 symbols;
every 10th message closes a bar for all 5 symbols, so predictions, paper accounting and shadow model
runs happen there); latency = send to response at the client. The shadow models are copies of the
serving fixture under other versions (the same ONNX cost). Rounds alternate 0 / 2 shadows (paired).

Writes bench/results/shadow.json; docs/benchmarks.md has the figures and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inference as ib

from kairos.features import ModelCard
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack import services
from kairos.stack.loopback import free_port, wait_for


def copy_model(dst: Path, version: str) -> Path:
    m = onnx.load(str(ib.MODEL))
    card = ModelCard.from_onnx(m)
    card.version = version
    card.embed(m)
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst / "model.onnx"))
    card.save(dst / "model.card.json")
    return dst / "model.onnx"


@contextlib.contextmanager
def server(shadows: list[Path], metrics_port: int) -> Iterator[int]:
    port = free_port()
    exe = shutil.which("kairos-inference", path=str(Path(sys.executable).parent))
    assert exe, "kairos-inference not installed (make setup)"
    cmd = [
        exe,
        "--model",
        str(ib.MODEL),
        "--grpc-addr",
        f"127.0.0.1:{port}",
        "--metrics-addr",
        f"127.0.0.1:{metrics_port}",
    ]
    cmd += ["--nats-url", "", "--max-batch", str(ib.BATCH), "--log-level", "warn"]
    if shadows:
        cmd += ["--shadow-models", ",".join(str(s) for s in shadows)]
    proc = subprocess.Popen(cmd, env={**os.environ, "KAIROS_INFERENCE_TOKEN": ib.TOKEN})
    try:

        def up() -> bool:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
                    stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=0.5, metadata=ib.AUTH)
                    return True
            except grpc.RpcError:
                return False

        wait_for(up, 120, "kairos-inference")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3, help="pairs of rounds (0 shadows, 2 shadows)")
    ap.add_argument("--out", default="bench/results/shadow.json")
    args = ap.parse_args()
    card = ModelCard.from_onnx(ib.MODEL)
    with tempfile.TemporaryDirectory(prefix="kairos-bench-shadow-") as tmp:
        shadows = [copy_model(Path(tmp) / f"c{i}", f"challenger-{i}") for i in (1, 2)]
        base, with2 = [], []
        shadow_bars: list[float] = []
        for i in range(args.rounds):
            for n, out in ((0, base), (2, with2)):
                mport = free_port()
                with server(shadows[:n], mport) as port:
                    out.append(asyncio.run(ib.latency(port, card, args.seconds)))
                    if n:  # the shadows did run: bars accounted per shadow model
                        url = f"http://127.0.0.1:{mport}/metrics"
                        acc = services.metric_samples(url, "kairos_inference_shadow_bars")
                        shadow_bars.append(min(v for k, v in acc.items() if 'role="shadow"' in k))
            print(
                f"pair {i}: 0 shadows {base[-1]['stream_latency_us_p50']:.0f} us p50, "
                f"2 shadows {with2[-1]['stream_latency_us_p50']:.0f} us p50",
                flush=True,
            )

    def med(rows: list[dict[str, float]], k: str) -> float:
        return round(statistics.median(r[k] for r in rows), 1)

    ratios = [
        b["stream_latency_us_p50"] / a["stream_latency_us_p50"] for a, b in zip(base, with2, strict=True)
    ]
    pred_ratios = [
        b["stream_latency_pred_us_p50"] / a["stream_latency_pred_us_p50"]
        for a, b in zip(base, with2, strict=True)
    ]
    result = {
        "pairs": args.rounds,
        "seconds_per_round": args.seconds,
        "offered_ticks_per_s": base[0]["stream_offered_ticks_per_s"],
        "latency_us_p50_no_shadow": med(base, "stream_latency_us_p50"),
        "latency_us_p50_two_shadows": med(with2, "stream_latency_us_p50"),
        "latency_us_p99_no_shadow": med(base, "stream_latency_us_p99"),
        "latency_us_p99_two_shadows": med(with2, "stream_latency_us_p99"),
        "pred_latency_us_p50_no_shadow": med(base, "stream_latency_pred_us_p50"),
        "pred_latency_us_p50_two_shadows": med(with2, "stream_latency_pred_us_p50"),
        "p50_ratio_two_shadows_median": round(statistics.median(ratios), 3),
        "p50_ratios": [round(r, 3) for r in ratios],
        "pred_p50_ratio_two_shadows_median": round(statistics.median(pred_ratios), 3),
        "shadow_bars_accounted_min": min(shadow_bars),
        "machine_cores": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
