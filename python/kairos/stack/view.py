"""The demo's live terminal view (rich): flow counters, orders and P&L, per-hop latency."""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from kairos.stack.observe import PipelineStats, decimal_to_float


def timeframe(period_s: int) -> str:
    """MT5 name of a bar period: 60 -> M1, 3600 -> H1, 86400 -> D1."""
    if period_s % 86400 == 0:
        return f"D{period_s // 86400}"
    if period_s % 3600 == 0:
        return f"H{period_s // 3600}"
    return f"M{period_s // 60}" if period_s % 60 == 0 else f"{period_s}s"


def _n(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def render(stats: PipelineStats, title: str = "Kairos demo") -> RenderableType:
    flow = Table(title="Flow", expand=True)
    for col in ("replayed", "ticks/s", "rows rejected", "ticks on NATS", "bars", "predictions", "signals"):
        flow.add_column(col, justify="right")
    flow.add_row(
        f"{stats.ticks_replayed:,}",
        f"{stats.ticks_per_s():,.0f}",
        f"{stats.rows_rejected:,}",
        f"{stats.md_ticks:,}",
        " ".join(f"{timeframe(p)}:{n:,}" for p, n in sorted(stats.bars.items())) or "0",
        f"{stats.predictions:,}",
        " ".join(f"{k}:{v}" for k, v in sorted(stats.signals.items())) or "0",
    )

    orders = Table(title="Orders", expand=True)
    for col in ("submitted", "accepted", "filled", "denied", "rejected", "denial reasons"):
        orders.add_column(col, justify="right")
    orders.add_row(
        str(stats.reports["submitted"]),
        str(stats.reports["accepted"]),
        str(stats.reports["filled"]),
        str(stats.reports["denied"]),
        str(stats.reports["rejected"]),
        " ".join(f"{k}:{v}" for k, v in stats.denials.most_common(3)) or "-",
    )

    positions = Table(title="Positions and P&L", expand=True)
    for col in ("symbol", "net lots", "avg price", "realized", "unrealized"):
        positions.add_column(col, justify="right")
    for sym, p in sorted(stats.positions.items()):
        positions.add_row(
            sym,
            f"{decimal_to_float(p.net_quantity):.2f}",
            f"{decimal_to_float(p.avg_price):.5f}",
            f"{decimal_to_float(p.realized_pnl):,.2f}",
            f"{decimal_to_float(p.unrealized_pnl):,.2f}",
        )
    positions.add_row(
        "total", "", "", f"{stats.realized_pnl():,.2f}", f"{stats.unrealized_pnl():,.2f}", style="bold"
    )

    latency = Table(title="Latency per hop (µs)", expand=True)
    for col, justify in (("hop", "left"), ("n", "right"), ("p50", "right"), ("p99", "right")):
        latency.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, n, p50, p99 in stats.latency_table():
        latency.add_row(name, f"{n:,}", _n(p50), _n(p99))

    return Panel(Group(flow, orders, positions, latency), title=title)
