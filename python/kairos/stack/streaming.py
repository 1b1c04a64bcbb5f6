"""`kairos stream`: live ticks and bars from the collector, predictions from NATS, as text lines.

Uses the typed betterproto2 SDK (`kairos.sdk`), the client a user's own tools would use; this is
a human-speed path, so its pure-Python decoding cost does not matter here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from kairos.inference.auth import with_token
from kairos.sdk.collector.v1 import MarketDataServiceStub, SubscribeRequest
from kairos.sdk.inference.v1 import Prediction
from kairos.stack.credentials import nats_connect_kwargs


class StreamError(RuntimeError):
    """The source could not be reached or ended with an error."""


def _ts(msc: int) -> str:
    return dt.datetime.fromtimestamp(msc / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def events(
    symbol: str,
    what: str,
    *,
    collector: str,
    nats_url: str,
    count: int = 0,
    collector_token: str = "",
    nats_creds: Path | None = None,
) -> Iterator[str]:
    """Yields one printable line per event; stops after `count` events when count > 0."""
    source = (
        _predictions(symbol, nats_url, nats_creds)
        if what == "predictions"
        else _market_data(symbol, what, collector, collector_token)
    )
    for n, line in enumerate(source, start=1):
        yield line
        if count and n >= count:
            return


def _market_data(symbol: str, what: str, addr: str, token: str) -> Iterator[str]:
    request = SubscribeRequest(
        symbols=[symbol], ticks=what == "ticks", bar_periods_s=[60] if what == "bars" else []
    )
    with with_token(grpc.insecure_channel(addr), token) as channel:
        stub = MarketDataServiceStub(channel)
        try:
            for event in stub.subscribe(request):
                if event.ticks is not None:
                    b = event.ticks
                    for i in range(len(b.time_msc)):
                        yield f"{b.symbol} {_ts(b.time_msc[i])} bid {b.bid[i]:.5f} ask {b.ask[i]:.5f}"
                elif event.bar is not None:
                    bar = event.bar
                    yield (
                        f"{bar.symbol} bar {bar.period_s}s {_ts(bar.open_time_msc)} O {bar.open:.5f} "
                        f"H {bar.high:.5f} L {bar.low:.5f} C {bar.close:.5f} ticks {bar.tick_volume}"
                    )
        except grpc.RpcError as exc:
            raise StreamError(f"collector {addr}: {exc.code().name} {exc.details()}") from exc


def _predictions(symbol: str, nats_url: str, creds: Path | None) -> Iterator[str]:
    """Bridges nats-py's asyncio subscription to a plain iterator through a thread and a queue."""
    out: queue.Queue[bytes | Exception] = queue.Queue(maxsize=10_000)
    stop = threading.Event()

    async def pump() -> None:
        import nats

        try:
            nc = await nats.connect(
                nats_url, connect_timeout=3, max_reconnect_attempts=3, **nats_connect_kwargs(creds)
            )
        except Exception as exc:  # reported to the caller as a StreamError
            out.put(StreamError(f"NATS {nats_url}: {exc}"))
            return
        sub = await nc.subscribe(f"kairos.pred.{symbol}")
        try:
            while not stop.is_set():
                try:
                    msg = await sub.next_msg(timeout=0.25)
                except TimeoutError:
                    continue
                out.put(msg.data)
        finally:
            await nc.close()

    thread = threading.Thread(target=lambda: asyncio.run(pump()), daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if isinstance(item, Exception):
                raise item
            p = Prediction.parse(item)
            probs = " ".join(f"{x:.3f}" for x in p.outputs)
            yield f"{p.symbol} {_ts(p.time_msc)} {p.model_name}@{p.model_version} p(down flat up) {probs}"
    finally:
        stop.set()
        thread.join(timeout=2)
