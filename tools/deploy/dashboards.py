"""Writes the Grafana dashboards in deploy/grafana/dashboards/ (dashboards as code).

Run ``make dashboards`` after editing; ``make lint`` fails when the committed JSON differs from what
this script writes, and checks every query with promtool; python/tests/deploy checks every metric
exists in the running services.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "deploy" / "grafana" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.row_h = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += self.row_h
        self.panels.append(
            {
                "type": "row",
                "id": self._next_id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.x, self.y, self.row_h = 0, self.y + 1, 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self._next_id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["datasource"] = DS
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def targets(*queries: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str, unit: str, *queries: tuple[str, str], description: str = "", stack: bool = False
) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "targets": targets(*queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10 if stack else 0,
                    "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    unit: str,
    expr: str,
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
    thresholds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": targets((expr, "")),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "mappings": mappings or [],
                "thresholds": {
                    "mode": "absolute",
                    "steps": thresholds or [{"color": "green", "value": None}],
                },
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "auto",
        },
    }


def table(title: str, expr: str, description: str = "") -> dict[str, Any]:
    t = targets((expr, ""))
    t[0].update({"format": "table", "instant": True, "range": False})
    return {
        "type": "table",
        "title": title,
        "description": description,
        "targets": t,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
        ],
    }


def rate(metric: str, by: str = "", fn: str = "rate") -> str:
    """sum [by (labels)] (fn(metric[$__rate_interval]))."""
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}({fn}({metric}[{RATE}]))"


def quantiles(metric: str, by: str, matcher: str = "") -> list[tuple[str, str]]:
    sel = f"{metric}_bucket{{{matcher}}}" if matcher else f"{metric}_bucket"
    legend = "{{" + by + "}}" if by else ""
    group = f"le, {by}" if by else "le"
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({sel}[{RATE}])))",
            f"p{int(q * 100)} {legend}".strip(),
        )
        for q in (0.5, 0.99)
    ]


def pipeline() -> dict[str, Any]:
    lay = Layout()
    red_green = [{"color": "red", "value": None}, {"color": "green", "value": 1}]
    state_map = [
        {
            "type": "value",
            "options": {
                "1": {"text": "ACTIVE", "color": "green"},
                "2": {"text": "REDUCING", "color": "orange"},
                "3": {"text": "HALTED", "color": "red"},
            },
        }
    ]

    lay.row("Overview")
    lay.add(
        stat(
            "Ticks accepted /s",
            "ops",
            rate("kairos_collector_ticks_accepted_total"),
            "Ticks that passed validation in every collector.",
        ),
        4,
        4,
    )
    lay.add(
        stat(
            "Predictions /s",
            "ops",
            rate("kairos_inference_predictions_total"),
            "Model predictions over all inference replicas.",
        ),
        4,
        4,
    )
    lay.add(stat("Signals published /s", "ops", rate("kairos_inference_signals_published_total")), 4, 4)
    lay.add(stat("Orders submitted /s", "ops", rate("kairos_execution_orders_submitted_total")), 4, 4)
    lay.add(
        stat(
            "Bridge connections",
            "short",
            'sum(kairos_bridge_connections{channel="market_data"})',
            "MT5 bridges connected to the collectors (market data).",
            thresholds=red_green,
        ),
        2,
        4,
    )
    lay.add(
        stat(
            "Inference links up",
            "short",
            "sum(kairos_collector_inference_endpoint_up)",
            "Open StreamPredict links from the collectors.",
            thresholds=red_green,
        ),
        2,
        4,
    )
    lay.add(
        stat(
            "Trading state",
            "none",
            "max(kairos_execution_trading_state)",
            "Worst trading state of the execution services.",
            mappings=state_map,
        ),
        2,
        4,
    )
    lay.add(
        stat(
            "Reconciled",
            "short",
            "min(kairos_execution_reconciled)",
            "1 once every execution service converged with its venue.",
            thresholds=red_green,
        ),
        2,
        4,
    )

    lay.row("Ingest (collector)")
    lay.add(
        timeseries(
            "Ticks by stage",
            "ops",
            (rate("kairos_collector_ticks_in_total", "source"), "in {{source}}"),
            (rate("kairos_collector_ticks_accepted_total", "source"), "accepted {{source}}"),
            (rate("kairos_collector_ticks_out_total", "sink"), "out {{sink}}"),
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Rejected and dropped ticks",
            "ops",
            (rate("kairos_collector_ticks_rejected_total", "reason"), "rejected {{reason}}"),
            (
                rate("kairos_collector_inference_dropped_ticks_total", "reason"),
                "not sent to inference: {{reason}}",
            ),
            (rate("kairos_collector_queue_overflow_total", "queue"), "queue overflow {{queue}}"),
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Bridge frames",
            "ops",
            (rate('kairos_bridge_frames_total{channel="market_data",direction="in"}', "body"), "{{body}}"),
            (rate('kairos_bridge_frame_errors_total{channel="market_data"}', "reason"), "closed: {{reason}}"),
            (rate('kairos_bridge_duplicate_frames_total{channel="market_data"}'), "duplicates dropped"),
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Bars and NATS",
            "ops",
            (rate("kairos_collector_bars_emitted_total", "period"), "bars {{period}}"),
            (rate("kairos_collector_nats_published_total", "kind"), "NATS {{kind}}"),
            (rate("kairos_collector_nats_errors_total"), "NATS errors"),
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Queues",
            "short",
            ("sum by (queue) (kairos_collector_queue_depth)", "{{queue}}"),
            description="Items waiting in the collector's bounded queues.",
        ),
        8,
        8,
    )

    lay.row("Latency per hop")
    lay.add(
        timeseries(
            "Hop latency (HopStamps)",
            "s",
            *quantiles("kairos_collector_hop_latency_seconds", "hop"),
            description="bridge_to_collector, collector_queue, collector_to_inference, inference_model,"
            " inference_to_collector, inference_round_trip.",
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Inference request and model run",
            "s",
            *quantiles("kairos_inference_request_seconds", "rpc"),
            *quantiles("kairos_inference_model_run_seconds", ""),
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Order path stages",
            "s",
            *quantiles("kairos_execution_stage_latency_seconds", "stage"),
            description="risk, journal, venue_send, venue_ack, submit, signal.",
        ),
        12,
        9,
    )
    lay.add(
        timeseries(
            "Journal flush and bridge heartbeats",
            "s",
            *quantiles("kairos_execution_journal_flush_seconds", ""),
            (
                "histogram_quantile(0.99, sum by (le) (rate("
                'kairos_bridge_heartbeat_rtt_seconds_bucket{channel="market_data"}[$__rate_interval])))',
                "p99 heartbeat RTT market data",
            ),
            (
                "histogram_quantile(0.99, sum by (le) (rate("
                'kairos_bridge_heartbeat_rtt_seconds_bucket{channel="trading"}[$__rate_interval])))',
                "p99 heartbeat RTT trading",
            ),
        ),
        12,
        9,
    )

    lay.row("Models (inference)")
    lay.add(
        table(
            "Models serving",
            "max by (instance, model, version, source) (kairos_inference_model_info == 1)",
            "The model version each inference replica serves now.",
        ),
        12,
        7,
    )
    lay.add(
        table(
            "Model validation",
            "max by (instance, model, version, gate, sharpe, sharpe_ci, n_trials) "
            "(kairos_inference_model_validation_info == 1)",
            "The registration gate's verdict on the serving model (PASSED, FAILED, UNVALIDATED), its "
            "out-of-sample net Sharpe with the interval, and the trials behind it (from the model card).",
        ),
        24,
        5,
    )
    lay.add(
        timeseries(
            "Predictions by model",
            "ops",
            (rate("kairos_inference_predictions_total", "model"), "{{model}}"),
            (rate("kairos_inference_model_loads_total", "result", "increase"), "model loads {{result}}"),
        ),
        12,
        7,
    )
    lay.add(
        timeseries(
            "Batching",
            "short",
            (
                rate("kairos_inference_batch_size_sum") + " / " + rate("kairos_inference_batch_size_count"),
                "mean rows per run",
            ),
            (
                rate("kairos_collector_inference_batch_ticks_sum")
                + " / "
                + rate("kairos_collector_inference_batch_ticks_count"),
                "mean ticks per request",
            ),
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Streams and state",
            "short",
            ("sum by (instance) (kairos_inference_streams_active)", "streams {{instance}}"),
            ("sum by (instance) (kairos_inference_symbol_states)", "symbol states {{instance}}"),
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Refused inputs and dropped signals",
            "ops",
            (rate("kairos_inference_rejected_inputs_total", "reason"), "refused {{reason}}"),
            (rate("kairos_inference_signals_dropped_total", "reason"), "signal dropped {{reason}}"),
        ),
        8,
        7,
    )
    shadow = (
        "Live paper accounting of the serving model and of each challenger run in shadow on the same "
        "bars (kairos-inference --shadow-models, ADR 0086), since the version was loaded: the card's "
        "decision policy and the paper venue's fills, summed over symbols. Empty without shadow models."
    )
    lay.add(
        timeseries(
            "Shadow evaluation: paper net return",
            "percentunit",
            ("max by (model, role) (kairos_inference_shadow_net_return)", "{{role}} {{model}}"),
            description=shadow + " Net return after costs, fraction of max_lots notional.",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Shadow evaluation: paper Sharpe",
            "short",
            ("max by (model, role) (kairos_inference_shadow_sharpe)", "{{role}} {{model}}"),
            description=shadow + " Annualised net Sharpe ratio of the per-bar returns.",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Shadow evaluation: bars, trades, turnover",
            "short",
            ("max by (model, role) (kairos_inference_shadow_bars)", "bars {{role}} {{model}}"),
            ("max by (model, role) (kairos_inference_shadow_trades)", "trades {{role}} {{model}}"),
            ("max by (model, role) (kairos_inference_shadow_turnover)", "turnover/bar {{role}} {{model}}"),
            description=shadow,
        ),
        8,
        7,
    )
    drift = (
        "Input drift against each model's training distribution in its card (ADR 0087); challengers "
        "in shadow are measured against their own card. Empty for cards without a distribution."
    )
    lay.add(
        timeseries(
            "Drift: largest feature PSI",
            "short",
            ("max by (model) (kairos_inference_feature_psi)", "{{model}}"),
            description=drift + " Over the last --drift-window rows; > 0.25 for 30 min fires "
            "KairosFeatureDrift.",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Drift: out-of-distribution rows",
            "percentunit",
            (
                rate("kairos_inference_out_of_distribution_total", "model")
                + " / "
                + rate("kairos_inference_dissimilarity_index_count", "model"),
                "out of distribution {{model}}",
            ),
            (
                rate("kairos_inference_abstained_total", "model")
                + " / "
                + rate("kairos_inference_dissimilarity_index_count", "model"),
                "abstained {{model}}",
            ),
            description=drift + " Share of rows beyond the out-of-distribution threshold (> 5% for "
            "15 min fires KairosOutOfDistributionInput) and of signals sent flat (--abstain-ood).",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Drift: dissimilarity index",
            "short",
            *quantiles("kairos_inference_dissimilarity_index", "model"),
            description=drift + " Distance of each predicted row from the training data over the "
            "training rows' mean distance: ~1 is typical.",
        ),
        8,
        7,
    )

    lay.row("Learning loop (promotion test, model expiry, recording)")
    lay.add(
        timeseries(
            "Promotion test (challenger vs serving)",
            "short",
            ("max by (model, against) (kairos_inference_promotion_p_value)", "p {{model}} vs {{against}}"),
            (
                "max by (model, against) (kairos_inference_promotion_statistic)",
                "t {{model}} vs {{against}}",
            ),
            description="One-sided Diebold-Mariano test of the per-bar net return difference on the same "
            "bars, Newey-West variance (ADR 0097): a small p says the challenger is better.",
        ),
        8,
        7,
    )
    lay.add(
        table(
            "Challengers significantly better",
            "max by (instance, model, against) (kairos_inference_promotion_significant == 1)",
            "Pairs whose test is significant (bars >= --promotion-min-bars, p <= --promotion-alpha): "
            "`kairos models promote --if-significant` or the loop's [auto_promote] promotes them.",
        ),
        8,
        5,
    )
    lay.add(
        timeseries(
            "Paired bars per test",
            "short",
            ("max by (model, against) (kairos_inference_promotion_bars)", "{{model}} vs {{against}}"),
        ),
        8,
        5,
    )
    lay.add(
        stat(
            "Expired serving models",
            "short",
            "sum(kairos_inference_model_expired) or vector(0)",
            "Serving versions past --model-max-age-days with no newer passing retrain (ADR 0098).",
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
        ),
        8,
        5,
    )
    lay.add(
        timeseries(
            "Serving model age",
            "d",
            ("max by (model) (kairos_inference_model_age_seconds) / 86400", "{{model}}"),
            description="Days since the serving version was registered.",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Signals sent flat: expired model",
            "ops",
            (rate("kairos_inference_expired_abstained_total", "model"), "{{model}}"),
            description="Signals sent flat while the serving version is expired (--abstain-expired, ADR "
            "0098); out-of-distribution abstentions are in the Models row.",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Recorder: rows written",
            "ops",
            (rate("kairos_recorder_ticks_total"), "ticks"),
            (rate("kairos_recorder_bars_total", "timeframe"), "bars {{timeframe}}"),
            description="Ticks and bars kairos-record keeps as Parquet (ADR 0084).",
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Recorder: lag and losses",
            "short",
            (
                "max by (instance) (time() - kairos_recorder_last_write_timestamp_seconds)",
                "s since last write",
            ),
            ("max by (instance) (kairos_recorder_buffered_rows)", "buffered rows"),
            (rate("kairos_recorder_tick_sequence_gaps_total", "", "increase"), "ticks missing (gaps)"),
            (rate("kairos_recorder_errors_total", "kind", "increase"), "errors {{kind}}"),
        ),
        8,
        7,
    )
    lay.add(
        timeseries(
            "Recorder: flush time",
            "s",
            *quantiles("kairos_recorder_flush_seconds", ""),
        ),
        8,
        7,
    )

    lay.row("Orders and risk (execution)")
    lay.add(
        timeseries(
            "Orders by state",
            "short",
            ("sum by (status) (kairos_execution_orders)", "{{status}}"),
            stack=True,
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Submitted, filled, denied",
            "ops",
            (rate("kairos_execution_orders_submitted_total", "symbol"), "submitted {{symbol}}"),
            (rate("kairos_execution_fills_total", "symbol"), "fills {{symbol}}"),
            (rate("kairos_execution_risk_denials_total", "reason"), "denied {{reason}}"),
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Signals by outcome", "ops", (rate("kairos_execution_signals_total", "outcome"), "{{outcome}}")
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Integrity",
            "short",
            (rate("kairos_execution_duplicate_fills_total", fn="increase"), "duplicate fills"),
            (rate("kairos_execution_overfills_total", fn="increase"), "overfills refused"),
            (rate("kairos_execution_invalid_transitions_total", "event", "increase"), "invalid {{event}}"),
            (
                rate("kairos_execution_unknown_order_events_total", "event", "increase"),
                "unknown order {{event}}",
            ),
            (rate("kairos_execution_ambiguous_results_total", fn="increase"), "ambiguous MT5 results"),
            (rate("kairos_execution_reconcile_adjustments_total", "kind", "increase"), "reconcile {{kind}}"),
        ),
        16,
        7,
    )
    lay.add(
        timeseries(
            "Orders held in memory",
            "short",
            ("sum by (instance) (kairos_execution_orders_in_memory)", "held {{instance}}"),
            (rate("kairos_execution_orders_evicted_total", fn="increase"), "finished orders dropped"),
            description="Working orders and the newest finished ones, up to --max-orders-in-memory; "
            "older finished orders leave memory and the journal answers for them (ADR 0125).",
        ),
        8,
        7,
    )

    lay.row("P&L (execution, account currency)")
    lay.add(
        stat(
            "Equity",
            "short",
            "sum(kairos_execution_equity)",
            description="Account equity from the venue's latest snapshot (paper: the simulated account).",
        ),
        6,
        7,
    )
    lay.add(
        stat(
            "Open P&L",
            "short",
            "sum(kairos_execution_unrealized_pnl)",
            description="Unrealized P&L of every open position at the latest quotes.",
            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0}],
        ),
        6,
        7,
    )
    lay.add(
        stat(
            "Realized P&L",
            "short",
            "sum(kairos_execution_realized_pnl)",
            description="Realized P&L since the journal began, net of commission.",
            thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 0}],
        ),
        6,
        7,
    )
    lay.add(
        stat(
            "Drawdown from the window's high",
            "short",
            "max_over_time(sum(kairos_execution_equity)[$__range:1m]) - sum(kairos_execution_equity)",
            description="Equity below its highest value in the dashboard's time range.",
            thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}],
        ),
        6,
        7,
    )
    lay.add(
        timeseries(
            "Equity over time",
            "short",
            ("sum(kairos_execution_equity)", "equity"),
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Realized P&L by symbol",
            "short",
            ("sum by (symbol) (kairos_execution_realized_pnl)", "{{symbol}}"),
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Unrealized P&L by symbol",
            "short",
            ("sum by (symbol) (kairos_execution_unrealized_pnl)", "{{symbol}}"),
        ),
        8,
        8,
    )

    lay.row("Security (bridge and gRPC peers)")
    lay.add(
        timeseries(
            "Bridge authentication",
            "short",
            (
                rate("kairos_bridge_auth_failures_total", "channel, reason", "increase"),
                "failed {{channel}} {{reason}}",
            ),
            (
                rate("kairos_bridge_connections_refused_total", "channel, reason", "increase"),
                "refused {{channel}} {{reason}}",
            ),
            (
                rate('kairos_bridge_frame_errors_total{reason="handshake_timeout"}', "channel", "increase"),
                "handshake timeout {{channel}}",
            ),
            description="Hellos refused for the bridge key, connections refused at accept (connection or "
            "handshake limit, an address rate-limited after failed handshakes) and handshakes cut at their "
            "deadline (docs/security.md). A steady rate is someone probing or flooding the port.",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Bridge handshakes in progress",
            "short",
            ("sum by (channel) (kairos_bridge_handshakes)", "handshaking {{channel}}"),
            ("sum by (channel) (kairos_bridge_auth_tracked_peers)", "addresses with failures {{channel}}"),
            description="Connections that have not proven the key yet (bounded by --bridge-max-handshakes) "
            "and the remote addresses the failed-handshake gate tracks (bounded).",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "gRPC connections refused or cut",
            "short",
            (
                rate("kairos_collector_grpc_connections_refused_total", fn="increase"),
                "collector refused (limit)",
            ),
            (
                rate("kairos_execution_grpc_connections_refused_total", fn="increase"),
                "execution refused (limit)",
            ),
            (
                rate("kairos_collector_grpc_handshakes_incomplete_total", fn="increase"),
                "collector closed before the preface",
            ),
            (
                rate("kairos_execution_grpc_handshakes_incomplete_total", fn="increase"),
                "execution closed before the preface",
            ),
            description="Connections over --grpc-max-connections, and connections closed before the client "
            "sent the HTTP/2 preface (cut by --grpc-handshake-timeout: a slowloris; or a port scan).",
        ),
        8,
        8,
    )
    return {
        "id": None,
        "uid": "kairos-pipeline",
        "title": "Kairos pipeline",
        "description": "Ticks to orders: ingest, per-hop latency, models, the learning loop, orders and "
        "risk, P&L. Generated by tools/deploy/dashboards.py.",
        "tags": ["kairos"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "kairos-prometheus"},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": lay.panels,
    }


DASHBOARDS = {"kairos-pipeline.json": pipeline}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if a committed dashboard differs")
    args = p.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = OUT / name, render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print(f"dashboards out of date (run `make dashboards`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
