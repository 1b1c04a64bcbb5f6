"""The demo's report: figures as JSON, the equity curve and the latency histogram as PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from kairos.stack.observe import PipelineStats, percentile


def figures(stats: PipelineStats, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flat figures (names → numbers) plus a few structured breakdowns."""
    out: dict[str, Any] = {
        "ticks_replayed": stats.ticks_replayed,
        "rows_rejected": stats.rows_rejected,
        "ticks_on_nats": stats.md_ticks,
        "bars": sum(stats.bars.values()),
        "predictions": stats.predictions,
        "signals": sum(stats.signals.values()),
        "orders_submitted": stats.reports["submitted"],
        "orders_denied": stats.reports["denied"],
        "fills": len(stats.fills),
        "realized_pnl": round(stats.realized_pnl(), 2),
        "unrealized_pnl": round(stats.unrealized_pnl(), 2),
    }
    for name, values in stats.latencies.items():
        key = name.replace("->", "_to_").replace(":", "_")
        out[f"latency_us_p50.{key}"] = _num(percentile(values, 50))
        out[f"latency_us_p99.{key}"] = _num(percentile(values, 99))
    out["bars_by_period_s"] = {str(k): v for k, v in sorted(stats.bars.items())}
    out["signals_by_direction"] = dict(stats.signals)
    out["denials_by_reason"] = dict(stats.denials)
    if extra:
        out.update(extra)
    return out


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 1)


def write(stats: PipelineStats, out_dir: Path, extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Writes report.json, equity.png and latency.png into out_dir; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "equity": out_dir / "equity.png",
        "latency": out_dir / "latency.png",
    }
    paths["json"].write_text(
        json.dumps(figures(stats, extra), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )

    fig, ax = plt.subplots(figsize=(8, 3.5))
    if stats.equity:
        t, eq = zip(*stats.equity, strict=True)
        times = np.array([np.datetime64(int(x * 1000), "ms") for x in t])
        ax.plot(times, eq, lw=1.2, drawstyle="steps-post")
        fig.autofmt_xdate()
    ax.axhline(0, color="grey", lw=0.6)
    ax.set(title="Equity (realized + unrealized P&L)", xlabel="market time (UTC)", ylabel="P&L")
    fig.tight_layout()
    fig.savefig(paths["equity"], dpi=110)
    plt.close(fig)

    totals = {k: v for k, v in stats.latencies.items() if k.startswith("total")}
    hops = {k: v for k, v in stats.latencies.items() if not k.startswith("total")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, values in sorted(hops.items()):
        axes[0].hist(values, bins=40, histtype="step", label=name)
    axes[0].set(title="Per-hop latency", xlabel="µs", ylabel="count", yscale="log")
    if hops:
        axes[0].legend(fontsize=6)
    for name, values in totals.items():
        axes[1].hist(values, bins=40, label=name.removeprefix("total:"))
    axes[1].set(title="End to end", xlabel="µs")
    if totals:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths["latency"], dpi=110)
    plt.close(fig)
    return paths
