"""Alertmanager's configuration (deploy/alertmanager/alertmanager.yml) as an operator relies on it:
accepted by amtool at the image's version, every alert rule routed by its severity (critical to
Telegram and e-mail, warning to e-mail), secrets read from files, and the same version in compose,
Kubernetes and the tools module. The end-to-end firing (real execution, Prometheus, Alertmanager,
a local webhook) is in tests/console/test_console_browser.py: the console's kill switch halts
trading and the KairosRiskBreakerTripped alert reaches the critical receivers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml  # type: ignore[import-untyped]

from .alerting import CONFIG, REPO, alertmanager_bin, image_version

RECEIVERS = {"critical": "critical", "warning": "email"}


@pytest.fixture(scope="module")
def amtool() -> Path:
    return alertmanager_bin() / "amtool"


def test_amtool_accepts_the_shipped_configuration(amtool: Path) -> None:
    out = subprocess.run(
        [str(amtool), "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_rule_routes_by_its_severity(amtool: Path, deploy: ModuleType) -> None:
    alerts = []
    for path in sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts += [r for r in group["rules"] if "alert" in r]
    assert len(alerts) >= 20
    for rule in alerts:
        severity = rule["labels"]["severity"]
        assert severity in RECEIVERS, f"{rule['alert']}: severity {severity!r} has no route"
        out = subprocess.run(
            [
                str(amtool),
                "config",
                "routes",
                "test",
                f"--config.file={CONFIG}",
                f"--verify.receivers={RECEIVERS[severity]}",
                f"alertname={rule['alert']}",
                f"severity={severity}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, f"{rule['alert']} ({severity}): {out.stdout}{out.stderr}"


def test_critical_goes_to_telegram_and_email_with_secrets_from_files() -> None:
    doc = yaml.safe_load(CONFIG.read_text())
    receivers = {r["name"]: r for r in doc["receivers"]}
    critical, email = receivers["critical"], receivers["email"]
    (telegram,) = critical["telegram_configs"]
    assert telegram["bot_token_file"] == "/run/secrets/alertmanager_telegram_bot_token"
    assert "bot_token" not in telegram
    assert critical["email_configs"] and email["email_configs"]
    assert set(email) == {"name", "email_configs"}, "warnings go to e-mail only"
    assert doc["global"]["smtp_auth_password_file"] == "/run/secrets/alertmanager_smtp_password"
    text = CONFIG.read_text()
    for inline in ("bot_token:", "auth_password:", "smtp_auth_password:"):
        assert inline not in text, f"{inline} would put a secret in the configuration"


def test_compose_and_kubernetes_run_the_version_amtool_validates_with() -> None:
    version = image_version()
    image = f"prom/alertmanager:{version}"
    assert image in (REPO / "docker-compose.yml").read_text()
    assert image in (REPO / "deploy" / "k8s" / "base" / "alertmanager.yaml").read_text()
