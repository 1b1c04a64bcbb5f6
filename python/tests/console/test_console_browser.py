"""The operator console in a real browser against the real stack (issue #19).

One stack for the module, started the way `kairos up --shadow-models` starts it: collector (embedded
NATS), inference (the checked-in model trained on real GBPUSD bars as the champion, whose card carries
no gate verdict: UNVALIDATED, and a challenger in shadow, the same weights with a more eager policy and
a FAILED verdict; both cards with a training distribution from real GBPUSD bars, so drift is
measured), execution (paper venue) and kairos-console, as processes on free loopback ports. Headless
chromium (Debian) logs in, watches a replay of real EURUSD ticks through the bridge library arrive
(both models' live paper figures included), halts trading with the kill switch and sees a stopped
service reported in its panel. Every wait is a bounded poll.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from tests.console.browser import chromium
from tests.deploy.alerting import Webhooks, alertmanager, prometheus, with_webhooks
from tests.inference.harness import load_gbpusd_m1, with_card
from typer.testing import CliRunner

from kairos import cli
from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.features.drift import distribution
from kairos.stack import processes, replay, services
from kairos.stack.loopback import wait_for
from kairos.types.v1 import types_pb2

pytestmark = pytest.mark.slow

MODEL = services.REPO / "python" / "tests" / "data" / "model" / "model.onnx"
TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"
SHOTS = services.REPO / "build" / "console"  # screenshots; the ones in docs/ are copies of these
CHALLENGER_VERDICT = "challenger fails the gate: FAILED Sharpe -0.84 does not beat buy-and-hold 5.45"
SERVING = '#panel-models .model[data-role="serving"]'
SHADOW = '#panel-models .model[data-role="shadow"]'
CARDS = (SERVING, SHADOW)


@dataclass
class Run:
    settings: services.StackSettings
    stack: processes.Stack
    url: str
    token: str
    di_threshold: float


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    run_dir = tmp_path_factory.mktemp("console-stack")
    card = ModelCard.from_onnx(MODEL)
    assert card.policy is not None
    # The training distribution of the fixture's own data (real GBPUSD M1 bars): the replayed
    # EURUSD is another market, so the drift figures have something to show.
    gbpusd = load_gbpusd_m1(20000)[["time", "open", "high", "low", "close", "spread", "tick_volume"]]
    dist = distribution(compute_features(gbpusd), SCHEMA.names)
    # A low entry threshold so that a few hours of EURUSD trade (as in tests/e2e/test_pipeline.py).
    model = with_card(
        MODEL,
        run_dir / "model" / "model.onnx",
        policy=dataclasses.replace(card.policy, entry_edge=0.5e-5),
        feature_distribution=dist,
    )
    # The challenger: the same weights with a lower entry threshold, so its paper record differs,
    # and a FAILED gate verdict in its card, worded on the fixture card's own figures (mean fold
    # Sharpe -0.84 against buy-and-hold's 5.45); the interval, DSR and trials are illustrative.
    challenger = with_card(
        MODEL,
        run_dir / "challenger" / "model.onnx",
        version="challenger",
        policy=dataclasses.replace(card.policy, entry_edge=0.2e-5),
        feature_distribution=dist,
        metrics={
            **card.metrics,
            "gate": {"passed": False, "reason": CHALLENGER_VERDICT, "conditions": {}},
            "sharpe": -0.84,
            "sharpe_ci": [-3.1, 1.4],
            "sharpe_ci_level": 0.95,
            "dsr": 0.08,
            "n_trials": 4,
            "net_return": -0.0004,
        },
    )
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=run_dir, model=str(model))
    settings.shadow_models = (str(challenger),)
    # The replay gives ~100 predictions: a PSI window that fills within them.
    settings.inference_args = ("--drift-window=100",)
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    binaries = services.build_go_binaries(settings.bin_dir)
    stack = processes.Stack(run_dir)
    try:
        stack.start_all([*services.specs(settings, binaries), services.console_spec(settings)])
        services.wait_pipeline_ready(settings)
        url = services.console_url(settings).rstrip("/")
        yield Run(settings, stack, url, settings.ensure_token(), float(dist["di"]["q999"]))
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


def text(driver: WebDriver, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except WebDriverException:
        return ""


def wait_text(driver: WebDriver, css: str, want: str, timeout: float = 30.0) -> None:
    wait_for(lambda: want in text(driver, css), timeout=timeout, what=f"{css} to show {want!r}", poll=0.2)


def read_live(driver: WebDriver, css: str, timeout: float = 10.0) -> str:
    """``css``'s text once it reads as something: a live panel re-rendered between finding an element
    and reading it reads as "" once (a stale element)."""
    deadline = time.monotonic() + timeout
    while (got := text(driver, css)) == "":
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {css} to read anything")
        time.sleep(0.05)
    return got


def wait_exact(driver: WebDriver, css: str, want: str, timeout: float = 10.0) -> None:
    """``css``'s text becomes exactly ``want``. A panel re-rendered between finding an element and
    reading it reads as "" once (a stale element), so a one-shot read of a live panel can miss."""
    wait_for(lambda: text(driver, css) == want, timeout=timeout, what=f"{css} to read {want!r}", poll=0.1)


def login(driver: WebDriver, url: str, token: str) -> None:
    driver.get(url + "/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_wrong_or_missing_token_is_refused_and_nothing_is_shown(run: Run, browser: WebDriver) -> None:
    login(browser, run.url, "not-the-token")
    wait_text(browser, "#error", "Token refused")
    assert browser.current_url.endswith("/login")
    assert not browser.find_elements(By.ID, "panel-positions")
    browser.get(run.url + "/")  # no session: back to the login page
    wait_for(lambda: browser.current_url.endswith("/login"), timeout=10, what="redirect to /login")
    assert not browser.find_elements(By.ID, "panel-positions")
    for path in ("/api/state", "/events"):
        assert http_status(run.url + path) == 401
        assert http_status(run.url + path, {"authorization": "Bearer not-the-token"}) == 401
    assert http_status(run.url + "/api/state", {"authorization": f"Bearer {run.token}"}) == 200


def test_the_page_loads_with_health_trading_state_and_the_unvalidated_model(
    run: Run, browser: WebDriver
) -> None:
    login(browser, run.url, run.token)
    wait_for(lambda: browser.current_url == run.url + "/", timeout=10, what="the console page")
    wait_text(browser, "#conn", "live")
    wait_text(browser, "#trading-state", "ACTIVE")
    for service in ("collector", "inference", "execution"):
        wait_text(browser, "#panel-health", f"{service} SERVING")
    # The checked-in model's card carries no gate verdict: the page must say so.
    wait_text(browser, "#panel-models", "UNVALIDATED")
    wait_text(browser, "#panel-models", "is not a validated model")
    assert browser.find_element(By.CSS_SELECTOR, f'{SERVING} [data-gate="UNVALIDATED"]')
    # The challenger in shadow, with its card's verdict and Sharpe interval, live figures and drift.
    wait_text(browser, SHADOW, "challenger")
    assert browser.find_element(By.CSS_SELECTOR, f'{SHADOW} [data-gate="FAILED"]')
    wait_exact(browser, f'{SHADOW} [data-k="oos-sharpe"]', "-0.84 [-3.10, 1.40] 95%")
    wait_text(browser, "#panel-models", CHALLENGER_VERDICT)
    for card in (SERVING, SHADOW):
        wait_exact(browser, f'{card} [data-k="bars"]', "0")  # nothing replayed yet
        wait_exact(browser, f'{card} [data-k="di"]', f"0.00 / {run.di_threshold:.2f}")
    # Read in one script: the panel is rebuilt on every poll, so elements found first may be stale
    # by the time their attributes are read.
    roles = browser.execute_script(
        "return [...document.querySelectorAll('#panel-models .model')].map(c => c.dataset.role)"
    )
    assert roles == ["serving", "shadow"]  # serving first


def test_live_updates_arrive_during_a_replay(run: Run, browser: WebDriver) -> None:
    data = replay.load(str(TICKS), symbol="EURUSD", strict=True)
    result: list[replay.ReplayResult] = []
    thread = threading.Thread(
        target=lambda: result.append(
            replay.replay(
                data,
                collector=f"127.0.0.1:{run.settings.ports.collector_bridge}",
                # 9,500 ticks at 500 a second (~19 s); the models predict on the last ~100 minutes,
                # about a third of the ticks, so the page (inference polled every 2 s) sees their
                # figures move several times.
                speed=500,
                bridge_key=run.settings.ensure_bridge_key(),
            )
        ),
        daemon=True,
    )

    def ticks() -> int:
        return int(text(browser, "#ticks").replace(",", "") or 0)

    def bars(card: str) -> int:
        return int(text(browser, f'{card} [data-k="bars"]').replace(",", "") or 0)

    before = ticks()
    seen: set[int] = set()
    shown: dict[str, set[int]] = {SERVING: set(), SHADOW: set()}
    thread.start()
    try:
        # While the replay is still running, the page shows the tick count change more than once:
        # pushed by the server, without a reload.
        def updating() -> bool:
            n = ticks()
            if n > before and thread.is_alive():
                seen.add(n)
            return len(seen) >= 2

        wait_for(updating, timeout=60, what="tick counts pushed to the page during the replay", poll=0.1)

        # And both models' live paper figures move while it runs: more bars accounted, each time.
        def models_updating() -> bool:
            for card, values in shown.items():
                b = bars(card)
                if b > 0 and thread.is_alive():
                    values.add(b)
            return all(len(v) >= 2 for v in shown.values())

        wait_for(models_updating, timeout=60, what="both models' live figures during the replay", poll=0.2)
    finally:
        thread.join(timeout=120)
    assert result and result[0].lost == 0
    wait_for(
        lambda: ticks() >= result[0].sent - len(data.rejected), timeout=30, what="every tick on the page"
    )
    wait_text(browser, "#panel-signals", "EURUSD", timeout=30)
    wait_text(browser, "#report-counts", "filled", timeout=30)
    wait_text(browser, "#panel-fills", "EURUSD", timeout=30)
    wait_text(browser, "#panel-positions", "EURUSD", timeout=30)
    wait_for(
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#panel-latency .wf .track")) >= 3,
        timeout=30,
        what="the latency waterfall",
    )
    wait_for(
        lambda: bool(browser.find_elements(By.CSS_SELECTOR, "#equity polyline")), timeout=30, what="equity"
    )
    # Both models were accounted on the same bars once the replay is through; the eager challenger
    # traded at least as often; drift measured each row against the cards' GBPUSD distribution.
    wait_for(lambda: bars(SERVING) == bars(SHADOW) >= max(shown[SERVING]), timeout=30, what="the same bars")
    trades = {c: int(read_live(browser, f'{c} [data-k="trades"]').replace(",", "")) for c in CARDS}
    assert trades[SHADOW] >= trades[SERVING] > 0, trades
    for card in CARDS:
        assert read_live(browser, f'{card} [data-k="net"]').endswith(" bp")
        di_last, threshold = (float(x) for x in read_live(browser, f'{card} [data-k="di"]').split(" / "))
        assert di_last > 0 and threshold == pytest.approx(run.di_threshold, abs=0.005)
        assert read_live(browser, f'{card} [data-k="psi"]').split(" ")[1] in SCHEMA.names
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "console.png"))


def test_kairos_status_shows_the_serving_model_and_the_challenger_with_paper_figures_and_drift(
    run: Run,
) -> None:
    res = CliRunner().invoke(
        cli.app, ["status", "--run-dir", str(run.settings.run_dir)], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    out = res.output
    live = out[out.index("Live, on paper since loaded") :]
    rows = {}
    for line in live.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in ("serving", "shadow"):
            rows[cells[0]] = cells
    assert set(rows) == {"serving", "shadow"}, out
    assert rows["shadow"][1].endswith(" challenger")
    assert rows["serving"][2] == rows["shadow"][2] and int(rows["serving"][2].replace(",", "")) > 0
    for cells in rows.values():
        assert (
            cells[3].endswith(" bp")
            and cells[7].startswith("DI ")
            and "OOD" in cells[7]
            and "PSI" in cells[7]
        )
    assert "FAILED" in out and "UNVALIDATED" in out


def test_the_page_fits_a_phone(run: Run, browser: WebDriver) -> None:
    browser.set_window_size(390, 2400)
    try:
        wait_text(browser, "#conn", "live")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"the page is {overflow} px wider than a phone's screen"
        # Each model card fits without scrolling sideways inside its panel (measured in one script:
        # live updates re-render the cards between separate WebDriver calls).
        widths = browser.execute_script(
            "return Array.from(document.querySelectorAll('#panel-models .model'))"
            ".map(c => c.scrollWidth - c.clientWidth)"
        )
        assert len(widths) == 2
        assert max(widths) <= 1, f"a model card is {max(widths)} px wider than the phone's panel"
        browser.save_screenshot(str(SHOTS / "console-phone.png"))
    finally:
        browser.set_window_size(1280, 1600)


def test_the_kill_switch_halts_trading_and_the_page_shows_halted(run: Run, browser: WebDriver) -> None:
    browser.find_element(By.ID, "kill").click()
    dialog = browser.find_element(By.ID, "kill-dialog")
    wait_for(lambda: dialog.get_attribute("open") is not None, timeout=10, what="the confirmation dialog")
    assert text(browser, "#trading-state") == "ACTIVE"  # nothing happens before the confirmation
    browser.find_element(By.ID, "kill-confirm").click()
    wait_text(browser, "#trading-state", "HALTED")
    addr = f"127.0.0.1:{run.settings.ports.execution_grpc}"
    md = [("authorization", f"Bearer {run.token}")]
    with grpc.insecure_channel(addr) as ch:
        stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
        limits = stub.GetRiskLimits(execution_pb2.GetRiskLimitsRequest(), metadata=md, timeout=5)
        assert limits.trading_state == execution_pb2.TRADING_STATE_HALTED
        order = stub.SubmitOrder(
            execution_pb2.SubmitOrderRequest(
                client_order_id="console-after-kill",
                symbol="EURUSD",
                side=execution_pb2.ORDER_SIDE_BUY,
                type=execution_pb2.ORDER_TYPE_MARKET,
                time_in_force=execution_pb2.TIME_IN_FORCE_IOC,
                quantity=types_pb2.Decimal(units=10, scale=2),
            ),
            metadata=md,
            timeout=5,
        ).order
    assert order.status == execution_pb2.ORDER_STATUS_DENIED
    assert order.denial.reason == execution_pb2.RISK_DENY_REASON_TRADING_HALTED
    wait_text(browser, "#trading-reason", "kill switch (console)")
    browser.save_screenshot(str(SHOTS / "console-halted.png"))


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_kill_switch_api_wants_a_login_a_confirmation_and_the_session_csrf_token(
    run: Run, browser: WebDriver
) -> None:
    kill, js = run.url + "/api/kill", {"content-type": "application/json"}
    halt = b'{"confirm": "HALT"}'
    assert post(kill, halt, js) == 401
    assert post(kill, halt, {**js, "authorization": "Bearer not-the-token"}) == 401
    assert post(kill, b"{}", {**js, "authorization": f"Bearer {run.token}"}) == 400
    cookie = browser.get_cookie("kairos_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    session = {**js, "cookie": f"kairos_console={cookie['value']}"}
    assert post(kill, halt, session) == 403  # a session without its CSRF token (a forged request)
    assert post(kill, halt, {**session, "x-csrf-token": "forged"}) == 403


def test_the_halt_reaches_a_person_through_prometheus_and_alertmanager(run: Run, tmp_path: Path) -> None:
    """The real Prometheus scrapes the real execution service with the shipped rules; the real
    Alertmanager routes with the shipped route tree, its Telegram and e-mail integrations turned
    into local webhooks: KairosRiskBreakerTripped (critical) reaches both, and not the e-mail-only
    receiver of warnings."""
    execution = f"127.0.0.1:{run.settings.ports.execution_metrics}"
    with (
        Webhooks() as hooks,
        alertmanager(with_webhooks(hooks.url), tmp_path / "alertmanager") as am,
        prometheus({"kairos-execution": execution}, am, tmp_path / "prometheus"),
    ):

        def fired(path: str) -> list[dict[str, object]]:
            return [a for a in hooks.alerts(path) if a["labels"]["alertname"] == "KairosRiskBreakerTripped"]

        for path in ("/critical/telegram", "/critical/email"):
            wait_for(lambda p=path: bool(fired(p)), timeout=120, what=f"the alert at {path}", poll=0.5)
            alert = fired(path)[0]
            assert alert["status"] == "firing"
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["instance"] == execution
            assert "HALTED" in alert["annotations"]["summary"]
        assert not fired("/email/email"), "a critical alert went to the warnings' receiver"


def test_a_stopped_service_is_shown_in_its_panel_and_the_rest_keeps_working(
    run: Run, browser: WebDriver
) -> None:
    inference = next(s for s in run.stack.services if s.spec.name == "inference")
    processes.terminate(inference.process, timeout_s=10)
    wait_text(browser, "#panel-health", "inference UNREACHABLE")
    wait_text(browser, "#panel-models .down", "inference unavailable")
    # The other panels keep their data and say nothing is wrong with them.
    assert text(browser, "#panel-positions .down") == ""
    assert "EURUSD" in text(browser, "#panel-positions")
    assert text(browser, "#trading-state") == "HALTED"
    wait_text(browser, "#panel-health", "execution SERVING")
    browser.save_screenshot(str(SHOTS / "console-service-down.png"))


def test_the_console_exports_its_own_metrics(run: Run) -> None:
    with urllib.request.urlopen(run.url + "/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert 'kairos_console_logins_total{result="refused"} 1.0' in body
    assert 'kairos_console_kill_switch_total{result="halted"} 1.0' in body
    assert 'kairos_console_source_up{source="inference"} 0.0' in body
    assert 'kairos_console_source_up{source="execution"} 1.0' in body


def test_the_console_log_is_json_and_never_holds_the_token(run: Run) -> None:
    import json

    log = Path(run.settings.run_dir / "console.log").read_text()
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        assert json.loads(ln)["component"] == "console"
    assert run.token not in log
    assert any(json.loads(ln)["event"] == "kill switch" for ln in lines)
    argv = processes.recorded_services(run.settings.run_dir)
    assert all(run.token not in " ".join(s.argv) for s in argv)


def test_logging_out_ends_the_session(run: Run, browser: WebDriver) -> None:
    cookie = browser.get_cookie("kairos_console")
    assert cookie is not None
    assert http_status(run.url + "/api/state", {"cookie": f"kairos_console={cookie['value']}"}) == 200
    browser.find_element(By.ID, "logout").click()
    wait_for(lambda: browser.current_url.endswith("/login"), timeout=10, what="the login page")
    assert http_status(run.url + "/api/state", {"cookie": f"kairos_console={cookie['value']}"}) == 401
