"""Alert rules, dashboards and the tools that read them: every alert has a severity and a runbook
section, every dashboard query names real metric families, and the PromQL name extraction the
metric-existence test relies on is right."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[3]
RULES = REPO / "deploy" / "prometheus" / "rules"
ISSUE_ALERTS = {
    "ingest stalled": "KairosIngestStalled",
    "inference latency p99 over budget": "KairosInferenceLatencyHigh",
    "risk breaker tripped": "KairosRiskBreakerTripped",
    "journal lag": "KairosJournalLag",
    "bridge disconnected": "KairosBridgeDisconnected",
    "error rates": "KairosTickRejectRateHigh",
}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (reason) (rate(kairos_x_total{reason!="ok"}[5m]))', {"kairos_x_total"}),
        (
            "histogram_quantile(0.99, sum by (le, hop) (rate(kairos_h_seconds_bucket[$__rate_interval])))",
            {"kairos_h_seconds_bucket"},
        ),
        ("a / on(instance) group_left(model) b > 0.5", {"a", "b"}),
        ("kairos:recorded:rate1m > 0 and on() vector(1)", {"kairos:recorded:rate1m"}),
        ('count(x offset 5m) or absent(y{job="z"})', {"x", "y"}),
        ("max_over_time(kairos_g[6h]) == 1e3", {"kairos_g"}),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("sum without (pod) (z)", {"z"}),
    ],
)
def test_promql_metric_names(deploy: ModuleType, expr: str, names: set[str]) -> None:
    assert deploy.promql_metric_names(expr) == names


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    runbook = (REPO / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    for path in RULES.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                name = rule["alert"]
                assert rule["labels"]["severity"] in {"warning", "critical"}, name
                assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}", name
                assert name.lower() in anchors, f"docs/operations.md has no section for {name}"


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = {
        r["alert"]
        for path in RULES.glob("*.yml")
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    missing = {what: alert for what, alert in ISSUE_ALERTS.items() if alert not in names}
    assert not missing


def test_committed_dashboards_match_their_generator() -> None:
    from .conftest import load_tool

    dashboards = load_tool("dashboards")
    for name, build in dashboards.DASHBOARDS.items():
        assert (REPO / "deploy" / "grafana" / "dashboards" / name).read_text() == dashboards.render(build), (
            name
        )


def test_dashboards_cover_the_pipeline(deploy: ModuleType) -> None:
    used = deploy.required_metrics()
    families = {deploy.exported_family(n) for n in used}
    # rates, latencies per hop, model versions, orders and denials
    for family in (
        "kairos_collector_ticks_accepted_total",
        "kairos_collector_hop_latency_seconds",
        "kairos_inference_model_info",
        "kairos_execution_orders_submitted_total",
        "kairos_execution_risk_denials_total",
    ):
        assert family in families


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["panels"][1].pop("id"), "missing or duplicate id"),
        (lambda d: d["panels"][1]["targets"][0].update(expr=""), "empty expr"),
        (
            lambda d: d["panels"][1]["targets"][0].update(datasource={"type": "prometheus", "uid": "nope"}),
            "not provisioned",
        ),
        (lambda d: d.update(id=7), 'must have "id": null'),
        (lambda d: d.pop("uid"), "missing top-level 'uid'"),
    ],
)
def test_broken_dashboards_are_refused_with_the_reason(
    deploy: ModuleType, tmp_path: Path, mutate: object, message: str
) -> None:
    import json

    src = REPO / "deploy" / "grafana" / "dashboards" / "kairos-pipeline.json"
    doc = json.loads(src.read_text())
    mutate(doc)  # type: ignore[operator]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(deploy.CheckError, match=re.escape(message)):
        deploy.dashboard_queries(bad)


def test_invalid_promql_in_a_dashboard_is_caught_by_promtool(deploy: ModuleType) -> None:
    import shutil

    if not shutil.which("promtool"):
        pytest.fail("promtool (Debian package prometheus) is not installed; `make setup` installs it")
    good = deploy.Query("ok", "sum(rate(kairos_x_total[$__rate_interval]))")
    bad = deploy.Query("bad", "sum(rate(kairos_x_total[$__rate_interval])")
    deploy.check_promql_with_promtool([good])
    with pytest.raises(deploy.CheckError, match="promtool rejects"):
        deploy.check_promql_with_promtool([good, bad])


@pytest.mark.parametrize(
    ("help_text", "prefix", "want"),
    [
        (
            "Usage of kairos-collector:\n  -bridge-addr string\n    \tTCP address for the MT5 bridge "
            '(env KAIROS_COLLECTOR_BRIDGE_ADDR) (default "127.0.0.1:7400")\n  -allow-crossed\n'
            "    \taccept bid > ask (env KAIROS_COLLECTOR_ALLOW_CROSSED)\n",
            "KAIROS_COLLECTOR_",
            [
                (
                    "-bridge-addr",
                    "KAIROS_COLLECTOR_BRIDGE_ADDR",
                    '"127.0.0.1:7400"',
                    "TCP address for the MT5 bridge",
                ),
                ("-allow-crossed", "KAIROS_COLLECTOR_ALLOW_CROSSED", "false", "accept bid > ask"),
            ],
        ),
        (
            "options:\n  -h, --help            show this help message and exit\n  --max-batch MAX_BATCH\n"
            + " " * 24
            + "Largest ONNX Runtime batch; every size\n"
            + " " * 24
            + "is warmed up.\n",
            "KAIROS_INFERENCE_",
            [
                (
                    "--max-batch",
                    "KAIROS_INFERENCE_MAX_BATCH",
                    "",
                    "Largest ONNX Runtime batch; every size is warmed up.",
                )
            ],
        ),
    ],
)
def test_parse_help_reads_go_and_argparse_help(
    deploy: ModuleType, help_text: str, prefix: str, want: list[tuple[str, str, str, str]]
) -> None:
    got = [(o.flag, o.env, o.default, o.help) for o in deploy.parse_help(help_text, prefix)]
    assert got == want


def test_prometheus_scrapes_every_service_on_its_agreed_metrics_port() -> None:
    agreed = {"kairos-collector": 9401, "kairos-inference": 9501, "kairos-execution": 9601}
    for name in ("prometheus.yml", "prometheus-k8s.yml"):
        conf = yaml.safe_load((REPO / "deploy" / "prometheus" / name).read_text())
        ports: dict[str, set[int]] = {}
        for job in conf["scrape_configs"]:
            for sc in job.get("static_configs", []):
                ports.setdefault(job["job_name"], set()).update(
                    int(t.rsplit(":", 1)[1]) for t in sc["targets"]
                )
            for sd in job.get("dns_sd_configs", []):
                ports.setdefault(job["job_name"], set()).add(int(sd["port"]))
        assert {job: ports.get(job) for job in agreed} == {job: {port} for job, port in agreed.items()}, name
        assert conf["rule_files"] == ["rules/*.yml"], name
