"""Gate benchmark: the power and the size of the registration gate, measured end to end.

Synthetic H1 bar series (this benchmark only: every other test and benchmark uses real data), 1 pip
spread, 0.2 bp commission per side, 10 bp per-bar volatility, 24/7 hourly bars:

- ``linear``: the next bar's drift is -k x z, z the last 15 bars' log return in units of its standard
  deviation (a mean reversion any linear model on the ``ret_15`` feature can find). Oracle position:
  sign(-z).
- ``nonlinear``: drift k x (|z| - sqrt(2/pi)): up after large moves either way, down after quiet
  ones; no linear function of the features finds it (symmetric in z). Oracle position: sign(|z| - 0.8).
- ``random_walk``: no drift at all.

k is calibrated so the oracle's own positions, traded as the pipeline trades (the default decision
policy, fills at the next open with spread, slippage and commission), earn a given annualised Sharpe
*after costs* (1.5, 3, 6) over 8 calibration series of 100,000 bars pooled. Each series runs
through the real pipeline: ``step_import`` (a Parquet file) -> ``step_train`` (walk-forward: MLP,
logistic regression, LightGBM on the same folds) -> ``step_backtest`` (every family through the
policy with costs; the candidate is the best family out of sample, deflated by the number of
families; rules; stats; gate).
"Registered" = the gate passed. The oracle's positions on the same validation bars go through the
same gate with the same trial count (the only learned model of its backtest: "is the planted edge
detectable on this series at all"); power is counted over the series whose oracle passes.

Metrics (flat, numbers only): ``gate_power_oracle_sharpe_<s>_<kind>`` (registered / oracle passes),
``gate_oracle_pass_rate_sharpe_<s>_<kind>``, ``gate_false_positive_rate`` (random walks registered),
``model_sharpe_median_<...>``, ``<family>_sharpe_median_<...>``, ``candidate_share_<family>_<...>``,
``duration_s``.

Usage: python bench/gate.py --out bench/results/gate.json [--quick] [--seeds 20] [--bars 60000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SIGMA = 0.001  # per-bar volatility of log price (10 bp, like EURUSD H1)
SPREAD = 0.0001  # 1 pip at a price near 1.1
COMMISSION = 0.00002  # per side, the kairos-train default
LOOKBACK = 15
PPY = 24 * 365.25
START_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
CALIBRATION_BARS = 100_000


def simulate(kind: str, k: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(close, oracle position per bar): position[t] is the sign of the drift of bar t+1, known at t."""
    rng = np.random.default_rng(seed)
    eps = (rng.standard_normal(n) * SIGMA).tolist()
    logp = [0.0] * n
    signal = [0.0] * n
    scale = SIGMA * math.sqrt(LOOKBACK)
    c = math.sqrt(2 / math.pi)
    linear = kind == "linear"
    drifting = kind != "random_walk"
    for t in range(1, n):  # plain floats: the recursion cannot be vectorised, numpy scalars are slow
        drift = 0.0
        if drifting and t > LOOKBACK:
            z = (logp[t - 1] - logp[t - 1 - LOOKBACK]) / scale
            drift = -k * SIGMA * z if linear else k * SIGMA * (abs(z) - c)
            signal[t - 1] = drift
        logp[t] = logp[t - 1] + drift + eps[t]
    close = 1.1 * np.exp(np.asarray(logp))
    return close, np.sign(np.asarray(signal))


CALIBRATION_SEEDS = tuple(range(10_000, 10_008))


def oracle_sharpe(kind: str, k: float, bars: int = CALIBRATION_BARS) -> float:
    """Net annualised Sharpe of the oracle's positions as the pipeline would trade them, pooled over
    ``CALIBRATION_SEEDS`` series (one series leaves the nonlinear edge's Sharpe too uncertain): one-hot
    probabilities through the default decision policy (``kairos.training.policy.decide``, bar by bar)
    and the backtest's live-like fills (next open, spread on buys, the paper venue's slippage,
    commission)."""
    from kairos.training.backtest import FillModel, fill_returns
    from kairos.training.policy import Params, PolicyConfig, State, decide

    params = Params(PolicyConfig().policy(SIGMA, SIGMA))  # one-hot: the edge is +-SIGMA, past the entry
    nets = []
    for seed in CALIBRATION_SEEDS:
        close, pos = simulate(kind, k, bars, seed=seed)
        frame = bars_frame(close, seed)
        idx = np.arange(LOOKBACK + 2, len(close) - 1, dtype=np.int64)
        st, held = State(), np.zeros(len(idx))
        for i, t in enumerate(idx.tolist()):
            p = pos[t]
            d = decide(params, st, 1.0 if p < 0 else 0.0, 1.0 if p > 0 else 0.0, SIGMA, close[t])
            held[i] = d.side
        open_, spread = frame["open"].to_numpy(), frame["spread"].to_numpy()
        nets.append(fill_returns(open_, close, spread, idx, held, FillModel(commission=COMMISSION))[1])
    net = np.concatenate(nets)
    return float(net.mean() / net.std() * math.sqrt(PPY))


def calibrate(kind: str, target: float, bars: int = CALIBRATION_BARS) -> float:
    """Bisection on k for the oracle's net annualised Sharpe (monotone in k on these ranges)."""
    lo, hi = 0.0, 0.5
    for _ in range(11):
        mid = (lo + hi) / 2
        if oracle_sharpe(kind, mid, bars) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def bars_frame(close: np.ndarray, seed: int) -> Any:
    import pandas as pd  # type: ignore[import-untyped]

    rng = np.random.default_rng(seed + 1)
    n = len(close)
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.standard_normal((2, n))) * SIGMA * 0.5 * close
    return pd.DataFrame(
        {
            "time": START_MS + np.arange(n, dtype=np.int64) * 3_600_000,
            "open": open_,
            "high": np.maximum(open_, close) + wick[0],
            "low": np.minimum(open_, close) - wick[1],
            "close": close,
            "spread": np.full(n, SPREAD),
            "tick_volume": rng.integers(500, 1500, n),
        }
    )


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One series through import -> train -> backtest/gate, plus the oracle through the same gate."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from kairos.training import pipeline
    from kairos.training.gate import GateConfig
    from kairos.training.labels import LabelConfig
    from kairos.training.train import TrainConfig

    t0 = time.perf_counter()
    close, pos = simulate(job["kind"], job["k"], job["bars"], job["seed"])
    with tempfile.TemporaryDirectory(prefix="kairos-gate-") as tmp:
        run_dir = Path(tmp) / "run"
        src = Path(tmp) / f"synthetic-{job['kind']}-{job['seed']}.parquet"
        bars_frame(close, job["seed"]).to_parquet(src, index=False)
        pipeline.step_import(
            run_dir, str(src), timeframe=None, ask_source=None, spread=None, source_tz="UTC",
            dedupe="error", max_bars=None,
        )  # fmt: skip
        tcfg = TrainConfig(epochs=job["epochs"], seed=job["seed"], threads=1)
        pipeline.step_train(run_dir, tcfg, LabelConfig(commission=COMMISSION))
        gcfg = GateConfig(n_boot=job["n_boot"])
        rep = pipeline.step_backtest(run_dir, None, gate_cfg=gcfg)
        # The oracle on the same validation bars: its one-hot probabilities through the same decision
        # policy, fills, rule baselines and trial count as the model. It is the only learned model of
        # its backtest: whether the planted edge is detectable at all on this series, not whether the
        # naive oracle (it trades every flip of the drift's sign, however small) out-earns a model
        # whose probabilities wait for a large edge.
        oracle_dir = Path(tmp) / "oracle"
        shutil.copytree(run_dir, oracle_dir)
        oos = {k: v for k, v in np.load(oracle_dir / "oos.npz").items() if k.startswith(("val_", "inner_"))}
        for k in range(len(rep["folds"])):
            oos[f"oracle_{k}"] = np.eye(3)[pos[oos[f"val_{k}"]].astype(int) + 1]
            oos[f"oracle_inner_{k}"] = np.eye(3)[pos[oos[f"inner_{k}"]].astype(int) + 1]
        np.savez(oracle_dir / "oos.npz", **oos)
        run = json.loads((oracle_dir / "run.json").read_text())
        run["models"], run["finals"], run["trials"] = {"oracle": {}}, {}, 1
        (oracle_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
        oracle = pipeline.step_backtest(oracle_dir, None, gate_cfg=gcfg, prior_trials=rep["trials"]["n"] - 1)
    return {
        **{k: job[k] for k in ("kind", "target", "seed")},
        "registered": bool(rep["gate"]["passed"]),
        "candidate": rep["candidate_family"],
        "failed": [c["name"] for c in rep["gate"]["conditions"] if not c["passed"]],
        "model_sharpe": rep["stats"]["model"]["sharpe"],
        "family_sharpes": rep["selection"]["sharpes"],
        "oracle_passes": bool(oracle["gate"]["passed"]),
        "oracle_sharpe": oracle["stats"]["model"]["sharpe"],
        "seconds": time.perf_counter() - t0,
    }


def summary(
    results: list[dict[str, Any]], targets: list[float], ks: dict[tuple[str, float], float]
) -> dict[str, float]:
    def rate(xs: list[bool]) -> float | None:
        return round(sum(xs) / len(xs), 3) if xs else None

    def median(xs: list[float]) -> float | None:
        return round(float(np.median(xs)), 3) if xs else None

    out: dict[str, float | None] = {}
    for kind in ("linear", "nonlinear"):
        for s in targets:
            cell = [r for r in results if r["kind"] == kind and r["target"] == s]
            ok = [r for r in cell if r["oracle_passes"]]
            tag = f"sharpe_{s:g}".replace(".", "_") + f"_{kind}"
            out[f"gate_power_oracle_{tag}"] = rate([r["registered"] for r in ok])
            out[f"gate_oracle_pass_rate_{tag}"] = rate([r["oracle_passes"] for r in cell])
            out[f"gate_registered_rate_{tag}"] = rate([r["registered"] for r in cell])
            out[f"model_sharpe_median_{tag}"] = median([r["model_sharpe"] for r in cell])
            for fam in sorted({f for r in cell for f in r["family_sharpes"]}):
                out[f"{fam}_sharpe_median_{tag}"] = median([r["family_sharpes"][fam] for r in cell])
            for fam in sorted({r["candidate"] for r in cell}):
                out[f"candidate_share_{fam}_{tag}"] = rate([r["candidate"] == fam for r in cell])
            out[f"oracle_sharpe_median_{tag}"] = median([r["oracle_sharpe"] for r in cell])
            out[f"oracle_k_{tag}"] = round(ks[(kind, s)], 5)
    rw = [r for r in results if r["kind"] == "random_walk"]
    out["gate_false_positive_rate"] = rate([r["registered"] for r in rw])
    out["model_sharpe_median_random_walk"] = median([r["model_sharpe"] for r in rw])
    # Numbers only: a figure with nothing behind it yet (no oracle passed, no series run) is left out.
    return {k: v for k, v in out.items() if v is not None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, short series, 2 epochs")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--bars", type=int, default=60_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sharpes", default="1.5,3,6")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.bars, args.epochs, args.sharpes = 1, 4000, 2, "3"
    t0 = time.perf_counter()
    targets = [float(s) for s in args.sharpes.split(",")]
    pairs = [(kind, s) for kind in ("linear", "nonlinear") for s in targets]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        cal_bars = [20_000 if args.quick else CALIBRATION_BARS] * len(pairs)
        ks = dict(zip(pairs, pool.map(calibrate, *zip(*pairs, strict=True), cal_bars), strict=True))
    n_boot = 500 if args.quick else 2000
    jobs = [
        {"kind": kind, "target": s, "k": ks[(kind, s)], "seed": seed, "bars": args.bars,
         "epochs": args.epochs, "n_boot": n_boot}
        for kind in ("linear", "nonlinear") for s in targets for seed in range(args.seeds)
    ]  # fmt: skip
    jobs += [
        {"kind": "random_walk", "target": 0.0, "k": 0.0, "seed": 1000 + seed, "bars": args.bars,
         "epochs": args.epochs, "n_boot": n_boot}
        for seed in range(args.seeds)
    ]  # fmt: skip
    # S=3 and the random walks first: the headline figures are ready before the rest.
    jobs.sort(key=lambda j: (j["target"] not in (3.0, 0.0), j["target"], j["kind"], j["seed"]))
    meta = {
        "seeds": args.seeds,
        "bars": args.bars,
        "epochs": args.epochs,
        "spread_pips": 1.0,
        "commission_bp_per_side": COMMISSION * 1e4,
        "workers": args.workers,
        "cpu_count": os.cpu_count() or 0,
    }
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for r in pool.map(run_one, jobs):
            results.append(r)
            print(
                f"{r['kind']:>11} S={r['target']:<3} seed {r['seed']:>4}: {r['candidate']:>6} "
                f"registered={r['registered']!s:5} "
                f"oracle passes={r['oracle_passes']!s:5} model Sharpe {r['model_sharpe']:+.2f} "
                f"(oracle {r['oracle_sharpe']:+.2f}) failed {r['failed']} {r['seconds']:.0f}s",
                file=sys.stderr,
                flush=True,
            )
            # Written after every series, so an interrupted run still leaves what it measured.
            out = summary(results, targets, ks) | meta
            out["series_done"], out["series"] = len(results), len(jobs)
            out["duration_s"] = round(time.perf_counter() - t0, 1)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            args.out.with_suffix(".runs.json").write_text(
                json.dumps(results, indent=1) + "\n", encoding="utf-8"
            )
    print(json.dumps(out, indent=2, sort_keys=True))
    print(f"cpu: {cpu_model()}", file=sys.stderr)


if __name__ == "__main__":
    main()
