"""Training benchmark: feature throughput and the import..parity pipeline on 30k real GBPUSD M1 bars.

features_rows_per_s: ``kairos.features.compute_features`` (batch) over the 30,117 bars of
shared/data/gbpusd-m1-bid-2012.csv, best of 5 rounds; ``online_features_rows_per_s``: the same bars
fed one by one to ``OnlineFeatures.update`` (the serving path). pipeline_s: import (CSV bid + ask
files -> validated bars) + features + labels + a 5-epoch MLP (one fit, no early stop) + ONNX export
+ ONNX Runtime parity on the held-out rows, in one process, torch on one thread. run_pipeline_s: what
``kairos-train run --no-register`` does with its defaults (import, every family on 4 walk-forward
folds and as a final model, backtest with tuned thresholds and the gate, export). The issue's target
is <= 60 s on 2 cores.

Usage: python bench/training.py --data ../shared/data --out bench/results/training.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the shared data directory")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    source = args.data / "gbpusd-m1-bid-2012.csv"

    t_all = time.perf_counter()
    from kairos.features import OnlineFeatures, compute_features, to_epoch_ms
    from kairos.training.data import load_bars

    bars, _ = load_bars(str(source))
    import_s = time.perf_counter() - t_all

    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        feats = compute_features(bars)
        rounds.append(time.perf_counter() - t)
    features_s = min(rounds)
    t = time.perf_counter()
    online = OnlineFeatures()
    times = to_epoch_ms(bars["time"])

    class _Bar:
        __slots__ = ("close", "high", "low", "open_time_msc", "spread_mean", "tick_volume")

    rows = []
    cols = [bars[c].to_numpy() for c in ("high", "low", "close", "spread", "tick_volume")]
    for i in range(len(bars)):
        b = _Bar()
        b.open_time_msc, b.high, b.low, b.close, b.spread_mean, b.tick_volume = (
            int(times[i]),
            cols[0][i],
            cols[1][i],
            cols[2][i],
            cols[3][i],
            cols[4][i],
        )
        rows.append(online.update(b))
    online_s = time.perf_counter() - t

    # The pipeline, timed end to end from a cold start of its steps.
    from kairos.training.export import export_onnx
    from kairos.training.labels import LabelConfig, label_bars, window_index, windows
    from kairos.training.train import TrainConfig, fit_model, sample_weights, split_early

    t0 = time.perf_counter()
    bars, _ = load_bars(str(source))
    t_import = time.perf_counter()
    feats = compute_features(bars)
    lab = label_bars(bars, LabelConfig())
    cfg = TrainConfig(epochs=5, patience=5, threads=1)
    idx = window_index(feats, lab.y, cfg.window)
    fit_idx, held = split_early(idx, cfg.inner_frac, 5)
    y = np.nan_to_num(lab.y).astype(np.int64)
    t_feat = time.perf_counter()
    r = fit_model(
        windows(feats, fit_idx, cfg.window),
        y[fit_idx],
        sample_weights(lab.end, fit_idx, cfg),
        windows(feats, held, cfg.window),
        y[held],
        sample_weights(lab.end, held, cfg),
        cfg,
    )
    t_train = time.perf_counter()
    from kairos.features import SCHEMA, ModelCard

    card = ModelCard(
        name="bench",
        version="0",
        architecture="mlp",
        feature_schema_hash=SCHEMA.hash,
        feature_names=list(SCHEMA.names),
        window=cfg.window,
        timeframe_s=60,
    )
    with tempfile.TemporaryDirectory() as d:
        res = export_onnx(r, card, Path(d), windows(feats, held, cfg.window))
    t_end = time.perf_counter()

    # What `kairos-train run --no-register` does with defaults: every family (MLP, logistic
    # regression, LightGBM) on 4 walk-forward folds and as a final model, the backtest with tuned
    # thresholds and the gate, the export of the candidate.
    from kairos.training import pipeline
    from kairos.training.pipeline import LearnedNothing

    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "run"
        t_run = time.perf_counter()
        pipeline.step_import(
            run, str(source), timeframe=None, ask_source=None, spread=None, source_tz="UTC",
            dedupe="error", max_bars=None,
        )  # fmt: skip
        pipeline.step_train(run, TrainConfig(threads=1), LabelConfig())
        pipeline.step_backtest(run)
        with contextlib.suppress(LearnedNothing):  # the run ends there too
            pipeline.step_export(run, "bench", "0")
        run_s = time.perf_counter() - t_run

    metrics: dict[str, object] = {
        "run_pipeline_s": round(run_s, 3),
        "bars": float(len(bars)),
        "features_rows_per_s": round(len(bars) / features_s, 1),
        "online_features_rows_per_s": round(len(bars) / online_s, 1),
        "online_features_us_per_bar": round(online_s / len(bars) * 1e6, 2),
        "import_s": round(t_import - t0, 3),
        "features_labels_s": round(t_feat - t_import, 3),
        "train_5_epochs_s": round(t_train - t_feat, 3),
        "train_samples": float(len(fit_idx)),
        "export_parity_s": round(t_end - t_train, 3),
        "pipeline_s": round(t_end - t0, 3),
        "parity_max_abs_diff": float(res.max_abs_diff),
        "parity_rows": float(res.parity_rows),
        "onnx_bytes": float(res.size_bytes),
        "epochs_run": float(r.epochs_run),
        "first_import_s": round(import_s, 3),
        "cpu_count": float(os.cpu_count() or 0),
        "cpu_model": cpu_model(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
