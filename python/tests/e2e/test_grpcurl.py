"""The real `grpcurl` against the running collector and execution service: what a user types.

Reflection must describe every service, and a streaming call must work without any .proto file
on the client side.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kairos.stack import processes, replay, services

pytestmark = pytest.mark.slow

GRPCURL = shutil.which("grpcurl") or str(services.REPO / ".tools" / "bin" / "grpcurl")


def grpcurl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GRPCURL, *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.StackSettings]:
    if not Path(GRPCURL).exists():
        pytest.fail("grpcurl is not installed: run `make setup`")
    run_dir = tmp_path_factory.mktemp("grpcurl")
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=run_dir, model="unused")
    binaries = services.build_go_binaries(settings.bin_dir)
    collector, _, execution = services.specs(settings, binaries)
    collector = processes.ServiceSpec(
        name=collector.name,
        argv=[a for a in collector.argv if not a.startswith("--inference")] + ["--inference-endpoints=none"],
        grpc_addr=collector.grpc_addr,
        metrics_url=collector.metrics_url,
    )
    with processes.Stack(run_dir) as st:
        st.start_all([collector, execution])
        yield settings


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("collector", {"kairos.collector.v1.MarketDataService", "grpc.health.v1.Health"}),
        ("execution", {"kairos.execution.v1.ExecutionService", "grpc.health.v1.Health"}),
    ],
)
def test_list_shows_the_services_through_reflection(
    stack: services.StackSettings, service: str, expected: set[str]
) -> None:
    port = stack.ports.collector_grpc if service == "collector" else stack.ports.execution_grpc
    out = grpcurl("-plaintext", f"127.0.0.1:{port}", "list")
    assert out.returncode == 0, out.stderr
    assert expected <= set(out.stdout.split())


def test_describe_shows_the_documented_contract(stack: services.StackSettings) -> None:
    out = grpcurl(
        "-plaintext", f"127.0.0.1:{stack.ports.execution_grpc}", "describe", "kairos.execution.v1.Order"
    )
    assert out.returncode == 0, out.stderr
    assert "client_order_id" in out.stdout and "kairos.types.v1.Decimal quantity" in out.stdout
    out = grpcurl(
        "-plaintext",
        f"127.0.0.1:{stack.ports.collector_grpc}",
        "describe",
        "kairos.collector.v1.MarketDataService",
    )
    assert out.returncode == 0, out.stderr
    assert "rpc Subscribe" in out.stdout and "stream .kairos.collector.v1.SubscribeResponse" in out.stdout


def test_subscribe_streams_replayed_ticks_to_grpcurl(stack: services.StackSettings) -> None:
    addr = f"127.0.0.1:{stack.ports.collector_grpc}"
    sub = subprocess.Popen(
        # The token from the environment (-expand-headers), so it stays out of the process list.
        [GRPCURL, "-plaintext", "-max-time", "20", "-expand-headers",
         "-H", "authorization: Bearer ${KAIROS_TOKEN}", "-d", '{"symbols": ["EURUSD"], "ticks": true}',
         addr, "kairos.collector.v1.MarketDataService/Subscribe"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KAIROS_TOKEN": stack.credentials().token("collector")},
    )  # fmt: skip
    try:
        # Wait until the subscription is registered, then replay a slice of real ticks.
        url = f"http://127.0.0.1:{stack.ports.collector_metrics}/metrics"
        for _ in range(100):
            if sum(services.metric_samples(url, "kairos_collector_subscribers").values()) >= 1:
                break
            time.sleep(0.1)
        data = replay.load(
            str(services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"), symbol="EURUSD", last=300
        )
        result = replay.replay(
            data, collector=f"127.0.0.1:{stack.ports.collector_bridge}", bridge_key=stack.ensure_bridge_key()
        )
        assert result.lost == 0
        got = 0
        assert sub.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        while got < 300:
            line = sub.stdout.readline()
            if not line:
                break
            buf += line
            try:
                msg, _ = decoder.raw_decode(buf.strip())
            except json.JSONDecodeError:
                continue
            buf = ""
            got += len(msg.get("ticks", {}).get("timeMsc", []))
        assert got == 300
    finally:
        sub.kill()
        sub.wait(timeout=5)
