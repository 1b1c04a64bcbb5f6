"""The bridge key: the C++ client (Python extension) proves it to the Python reference peer and to
the real Go collector, and refuses a server that cannot prove it back (docs/adr/0015)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

import kairos.bridge.client as kb
from kairos.bridge.peer import BridgePeer, hello_proof
from kairos.stack import services
from kairos.stack.loopback import free_port

KEY = "python-test-bridge-key-0123456789abcdef"
FAST = kb.BridgeOptions(reconnect_min_ms=10, reconnect_max_ms=50, close_flush_ms=0)


def one_quote() -> np.ndarray:
    return kb.quote_ticks([1577836800000], [1.12], [1.1201])


def test_hello_proof_matches_the_golden_vector() -> None:
    server_nonce, client_nonce = bytes(range(32)), bytes(range(32, 64))
    key = b"kairos-golden-bridge-key-0123456789"
    assert hello_proof(key, False, server_nonce, client_nonce, 2**64 - 1, 1, 2).hex() == (
        "846cac9a38fe8f5c56600f2b5c4d2438b7ec579dd6005f15b31a1836c479ee26"
    )
    assert hello_proof(key, True, server_nonce, client_nonce, 2**64 - 1, 1, 2).hex() == (
        "ab22e8ebe659bb8fba99e0868fe6eeb2051db9afc9b33d911cdc3fd678559fa1"
    )


def test_the_extension_with_the_key_is_welcomed_by_the_reference_peer() -> None:
    with BridgePeer(key=KEY) as peer, kb.Bridge(peer.endpoint, "", bridge_key=KEY, options=FAST) as b:
        assert b.push_ticks("EURUSD", 5, one_quote()) == kb.Status.OK
        assert peer.wait_for(lambda: len(peer.ticks) == 1, 5)
        assert len(peer.hellos[0].auth_proof) == 32
        assert peer.auth_failures == 0


@pytest.mark.parametrize("key", ["", "another-key-0123456789abcdef"], ids=["no key", "wrong key"])
def test_the_reference_peer_refuses_a_missing_or_wrong_key(key: str) -> None:
    with BridgePeer(key=KEY) as peer, kb.Bridge(peer.endpoint, "", bridge_key=key, options=FAST) as b:
        b.push_ticks("EURUSD", 5, one_quote())
        assert peer.wait_for(
            lambda: peer.auth_failures >= 1 and b.counters()["last_error"] == kb.Status.E_AUTH, 5
        )
        assert len(peer.ticks) == 0


def test_a_bridge_with_a_key_refuses_a_server_without_one() -> None:
    with BridgePeer() as peer, kb.Bridge(peer.endpoint, "", bridge_key=KEY, options=FAST) as b:
        assert peer.wait_for(lambda: b.counters()["last_error"] == kb.Status.E_AUTH, 5)
        assert peer.hellos == [], "the Hello went to a server that does not authenticate"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The real Go collector with a bridge key file: (bridge endpoint, metrics URL)."""
    run_dir = tmp_path_factory.mktemp("collector")
    settings = services.StackSettings(run_dir=run_dir, bridge_key=KEY)
    settings.ensure_bridge_key()
    binary = services.build_go_binaries(settings.bin_dir)["kairos-collector"]
    bridge, metrics = free_port(), free_port()
    argv = [
        str(binary),
        f"--bridge-addr=127.0.0.1:{bridge}",
        f"--grpc-addr=127.0.0.1:{free_port()}",
        f"--metrics-addr=127.0.0.1:{metrics}",
        f"--nats-addr=127.0.0.1:{free_port()}",
        "--nats-insecure",
        "--inference-endpoints=none",
        f"--bridge-key-file={settings.bridge_key_file}",
    ]
    with open(run_dir / "collector.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{metrics}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, (run_dir / "collector.log").read_text()
                assert time.monotonic() < deadline, "the collector did not come up"
                time.sleep(0.05)
        yield f"127.0.0.1:{bridge}", url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def auth_failures(url: str, reason: str) -> float:
    samples = services.metric_samples(url, "kairos_bridge_auth_failures_total")
    return sum(v for labels, v in samples.items() if f'reason="{reason}"' in labels)


def test_the_go_collector_takes_ticks_from_a_bridge_with_the_key(collector: tuple[str, str]) -> None:
    endpoint, _ = collector
    with kb.Bridge(endpoint, "", bridge_key=KEY, options=FAST) as b:
        assert b.push_ticks("EURUSD", 5, one_quote()) == kb.Status.OK
        deadline = time.monotonic() + 10
        while b.counters()["ticks_acked"] < 1:
            assert time.monotonic() < deadline, b.drain_log()
            time.sleep(0.01)
        assert b.counters()["market_data_connected"] == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [("", "missing_proof"), ("another-key-0123456789abcdef", "bad_proof")],
    ids=["none", "wrong"],
)
def test_the_go_collector_refuses_a_bridge_without_the_key(
    collector: tuple[str, str], key: str, reason: str
) -> None:
    endpoint, url = collector
    before = auth_failures(url, reason)
    with kb.Bridge(endpoint, "", bridge_key=key, options=FAST) as b:
        b.push_ticks("EURUSD", 5, one_quote())
        deadline = time.monotonic() + 10
        while not (b.counters()["last_error"] == kb.Status.E_AUTH and auth_failures(url, reason) > before):
            assert time.monotonic() < deadline, b.drain_log()
            time.sleep(0.01)
        assert b.counters()["ticks_acked"] == 0
        assert b.counters()["market_data_connected"] == 0
