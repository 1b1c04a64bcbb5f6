"""The console's market data (kairos-console as a process, a real NATS server, no services behind it):
the last mids it holds are bounded, keyed as they are by the symbols the publishers choose."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from tests.console.process import console_spec

from kairos.console.hub import MAX_SYMBOLS
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.stack import processes
from kairos.stack.loopback import wait_for
from kairos.stack.natsfence import fence

TOKEN = "console-symbols-test-token"


def _get(url: str, token: str = "") -> str:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def _refused(url: str) -> float:
    for fam in text_string_to_metric_families(_get(url + "/metrics")):
        for s in fam.samples:
            if s.name == "kairos_console_mid_symbols_refused_total":
                return float(s.value)
    return 0.0


async def _publish(nats_url: str, symbols: list[str]) -> None:
    import nats

    nc = await nats.connect(nats_url)
    try:
        for sym in symbols:
            batch = md.TickBatch(symbol=sym, time_msc=[1], bid=[1.0], ask=[1.2])
            await nc.publish(f"kairos.md.{sym}", batch.SerializeToString())
        await fence(nc)
    finally:
        await nc.close()


def test_mids_are_held_for_at_most_max_symbols_and_the_rest_are_counted(
    nats_url: str, tmp_path: Path
) -> None:
    spec, url = console_spec(tmp_path, TOKEN, f"--nats-url={nats_url}")
    symbols = [f"SYM{i:05d}" for i in range(MAX_SYMBOLS + 3)]
    with processes.Stack(tmp_path) as stack:
        stack.wait_ready(stack.start(spec))
        wait_for(lambda: json.loads(_get(url + "/api/state", TOKEN))["sources"]["nats"]["ok"], 20, "NATS")
        asyncio.run(_publish(nats_url, symbols))
        wait_for(lambda: _refused(url) == 3, 20, "3 symbols refused")
        mids = json.loads(_get(url + "/api/state", TOKEN))["mid"]
    assert sorted(mids) == symbols[:MAX_SYMBOLS]  # the first ones, not the latest: no churn by a flood
