"""The tick intake in C++ (ADR 0119) against the Python path it stands in for, on real EURUSD ticks.

A stream's request of tick batches only, every tick good and of a symbol already checked against the
model, is taken whole by ``Kernel.intake_ticks`` from the request's bytes; any other request goes
through ``StreamState``'s Python path. Each test runs one request schedule through a stream with the
intake and one without it, whose bar builders are ``BarBuilder`` itself (the definition the C++
``TickBars`` is held to), and compares the model inputs, the quotes, the watermarks, the bar
builders and the windows after every request, bit for bit; it also checks which path took each
request, so a schedule the intake never takes fails.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.test_bar_intake import _same_work, _served, took

from kairos.features import BarBuilder, native
from kairos.inference.metrics import Metrics
from kairos.inference.model import ServedModel
from kairos.inference.pipeline import NATIVE
from kairos.inference.streams import StreamState, Work
from kairos.inference.v1 import inference_pb2 as pb
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.types.v1 import types_pb2

MAX_TICKS = 1000


def _stream(intake: bool) -> StreamState:
    return StreamState(
        Metrics(),
        allowed_symbols=frozenset(),
        max_ticks_per_batch=MAX_TICKS,
        max_bars_per_request=64,
        max_symbols=16,
        bar_intake=intake,
    )


def _process(st: StreamState, raw: bytes, model: ServedModel, monkeypatch: pytest.MonkeyPatch) -> Work:
    """``st.process`` of the request; a stream without the intakes makes its symbols' states (on first
    use) with ``BarBuilder`` as their builder."""
    req = pb.StreamPredictRequest.FromString(raw)
    if st.intake is not None:
        return st.process(req, model, raw)
    make_slot = native.slot
    with monkeypatch.context() as m:
        m.setattr(native, "tick_bars", lambda tf, point=1e-5: BarBuilder(tf, point))
        m.setattr(native, "slot", lambda sym, windows, ring, bars=None: make_slot(sym, windows, ring))
        return st.process(req, model, raw)


def _builder_state(b: Any) -> tuple[Any, ...]:
    if isinstance(b, BarBuilder):
        return (
            b._open_ms,
            b._o,
            b._h,
            b._l,
            b._c,
            b._n,
            b._spread_sum,
            b._spread_max,
            b._volume,
            b.late_ticks,
        )
    return tuple(b.state())


def _same_state(a: StreamState, b: StreamState, step: str) -> None:
    assert sorted(a.symbols) == sorted(b.symbols), step
    for sym, sa in a.symbols.items():
        sb = b.symbols[sym]
        for f in ("last_bar_open_msc", "last_time_msc", "bid", "ask", "last_seq", "capacity"):
            assert getattr(sa, f) == getattr(sb, f), (step, sym, f)
        assert not isinstance(sa.feed.builder, BarBuilder) and isinstance(sb.feed.builder, BarBuilder)
        assert _builder_state(sa.feed.builder) == _builder_state(sb.feed.builder), (step, sym)
        assert np.array_equal(sa.feed.windows.array(), sb.feed.windows.array()), (step, sym)
        assert sa.feed.windows.count == sb.feed.windows.count, (step, sym)
        assert sa.rows_ring.count == sb.rows_ring.count, (step, sym)


def _path(st: StreamState) -> dict[str, float]:
    return {p: st.metrics.tick_intake.labels(p)._value.get() for p in ("c++", "python")}


Step = tuple[str, pb.StreamPredictRequest, str]


def _run(steps: list[Step], models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch) -> int:
    """Each step through both streams; returns how many inputs the intake's stream made."""
    fast, slow = _stream(True), _stream(False)
    inputs = 0
    for name, req, path in steps:
        model = models[name.split(":")[0]] if ":" in name else models["a"]
        before = _path(fast)
        raw = req.SerializeToString()
        wf = _process(fast, raw, model, monkeypatch)
        ws = _process(slow, raw, model, monkeypatch)
        _same_work(wf, ws, name)
        _same_state(fast, slow, name)
        assert took(before, _path(fast)) == path, (name, took(before, _path(fast)))
        inputs += len(wf.symbols)
    assert _path(slow) == {"c++": 0.0, "python": 0.0}
    return inputs


@pytest.fixture(scope="module")
def models(model_path: Path) -> dict[str, ServedModel]:
    assert NATIVE is not None, "the C++ feature kernel is not built: run `make cpp-build`"
    # Two loads of one file are two models to a stream: the swap re-checks every symbol.
    return {"a": _served(model_path), "b": _served(model_path)}


class Feed:
    """Real EURUSD ticks as two symbols' streams: EURUSD as recorded, GBPUSD the same ticks 17 s
    later at 1.25x the prices (its own bars), each cut into pushes of ``n`` ticks."""

    def __init__(self, ticks: pd.DataFrame) -> None:
        t = [int(x) for x in ticks["time_msc"]]
        b, a = ticks["bid"].astype(float).tolist(), ticks["ask"].astype(float).tolist()
        v = ticks["volume"].astype(float).tolist()
        self.cols = {
            "EURUSD": (t, b, a, v),
            "GBPUSD": ([x + 17_000 for x in t], [x * 1.25 for x in b], [x * 1.25 for x in a], v),
        }
        self.pos = dict.fromkeys(self.cols, 0)
        self.seq = dict.fromkeys(self.cols, 0)

    def left(self) -> int:
        return min(len(c[0]) - self.pos[s] for s, c in self.cols.items())

    def batch(self, sym: str, n: int, *, seq: bool = True, volume: bool = False, **bad: Any) -> md.TickBatch:
        t, b, a, v = self.cols[sym]
        i = self.pos[sym]
        self.pos[sym] = i + n
        cols: dict[str, Any] = {"time_msc": t[i : i + n], "bid": b[i : i + n], "ask": a[i : i + n]}
        if volume:
            cols["volume"] = v[i : i + n]
        if seq:
            cols["sequence"] = list(range(self.seq[sym] + 1, self.seq[sym] + n + 1))
            self.seq[sym] += n
        for k, (j, x) in bad.items():  # e.g. bid=(3, nan): the batch's tick 3 with that bid
            cols[k][j] = x
        return md.TickBatch(symbol=sym, **cols)

    def req(self, *batches: tuple[str, int], warmup: bool = False, **kw: Any) -> pb.StreamPredictRequest:
        return pb.StreamPredictRequest(ticks=[self.batch(s, n, **kw) for s, n in batches], warmup=warmup)


def test_the_tick_intake_and_the_python_path_make_the_same_inputs_and_state_on_real_ticks(
    eurusd_ticks: pd.DataFrame, models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Feed(eurusd_ticks)
    both = (("EURUSD", 40), ("GBPUSD", 40))
    steps: list[Step] = [("new symbols", f.req(*both), "python")]
    steps += [
        ("warm-up ticks", f.req(("EURUSD", 200), ("GBPUSD", 200), warmup=True), "c++") for _ in range(6)
    ]
    steps += [("40-tick pushes", f.req(*both), "c++") for _ in range(40)]
    steps += [("without sequences", f.req(*both, seq=False), "c++") for _ in range(5)]
    steps += [("with volumes", f.req(*both, volume=True), "c++") for _ in range(5)]
    steps += [("a symbol in two batches", f.req(("EURUSD", 20), ("GBPUSD", 40), ("EURUSD", 20)), "c++")]

    def bad(sym: str, **b: Any) -> pb.StreamPredictRequest:
        return pb.StreamPredictRequest(
            ticks=[f.batch("EURUSD" if sym != "EURUSD" else "GBPUSD", 40), f.batch(sym, 40, **b)]
        )

    # A bad tick among good ones: the whole request goes the Python way, which refuses that tick only.
    steps.append(("NaN bid", bad("EURUSD", bid=(5, math.nan)), "python"))
    steps.append(("crossed quote", bad("GBPUSD", ask=(0, 1.0)), "python"))
    steps.append(("non-positive ask", bad("EURUSD", ask=(39, -1.0)), "python"))
    steps.append(("after refusals", f.req(*both), "c++"))
    steps.append(("time going back", bad("EURUSD", time_msc=(20, 0)), "python"))
    steps.append(("a sequence repeated", bad("GBPUSD", sequence=(7, 1)), "python"))

    def malformed() -> pb.StreamPredictRequest:
        b = f.batch("EURUSD", 40)
        del b.ask[-1]
        return pb.StreamPredictRequest(ticks=[b])

    steps.append(("columns of different lengths", malformed(), "python"))
    steps.append(("an empty batch", pb.StreamPredictRequest(ticks=[md.TickBatch(symbol="EURUSD")]), "python"))
    steps.append(("oversized", f.req(("EURUSD", MAX_TICKS + 1)), "python"))
    steps.append(("on again", f.req(*both), "c++"))

    # A Bar of the open period on the stream, then the ticks that close that period: the bar is not
    # made twice (the tick path skips it), whichever path takes the ticks.
    def bar_then_ticks() -> pb.StreamPredictRequest:
        t, b, *_ = f.cols["EURUSD"]
        i = f.pos["EURUSD"]
        period = 60_000
        open_ms = t[i] // period * period
        while t[f.pos["EURUSD"]] < open_ms + period:  # that period's ticks never come
            f.pos["EURUSD"] += 1
        bar = md.Bar(
            symbol="EURUSD",
            period_s=60,
            open_time_msc=open_ms,
            open=b[i],
            high=b[i],
            low=b[i],
            close=b[i],
            tick_volume=1,
            spread_mean=0.0001,
        )
        return pb.StreamPredictRequest(bars=[bar])

    steps.append(("a bar of the open period", bar_then_ticks(), "-"))
    steps += [("ticks after that bar", f.req(*both), "c++") for _ in range(3)]

    def with_hops() -> pb.StreamPredictRequest:
        r = f.req(*both)
        r.request_id = 99
        r.hops.add(stage=types_pb2.HOP_STAGE_COLLECTOR_SEND, time_us=123)
        return r

    steps.append(("hops and request id", with_hops(), "c++"))

    def ticks_and_bars() -> pb.StreamPredictRequest:
        r = f.req(*both)
        r.bars.append(md.Bar(symbol="USDJPY", period_s=60, open_time_msc=0, open=1, high=1, low=1, close=1))
        return r

    steps.append(("ticks and bars at once", ticks_and_bars(), "-"))
    # Another model: the first request re-checks each symbol in Python, then the intake again.
    steps.append(("b:swap", f.req(*both), "python"))
    steps += [("b:after the swap", f.req(*both), "c++") for _ in range(3)]
    steps.append(
        (
            "b:a new symbol",
            pb.StreamPredictRequest(
                ticks=[
                    f.batch("EURUSD", 40),
                    md.TickBatch(symbol="AUDUSD", time_msc=[1], bid=[0.7], ask=[0.7001]),
                ]
            ),
            "python",
        )
    )
    while f.left() > 80:
        steps.append(("b:to the end", f.req(*both), "c++"))
    inputs = _run(steps, models, monkeypatch)
    assert inputs > 50  # the schedule reaches full windows: model inputs are compared, not only state


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(num: int, body: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(body)) + body


def test_bytes_the_tick_intake_cannot_read_change_nothing_and_the_python_path_takes_them(
    eurusd_ticks: pd.DataFrame, models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = models["a"]
    f = Feed(eurusd_ticks)
    fast = _stream(True)
    for _ in range(5):
        _process(fast, f.req(("EURUSD", 40)).SerializeToString(), model, monkeypatch)
    sym = fast.symbols["EURUSD"]

    def snapshot() -> tuple[Any, ...]:
        return (
            sym.last_bar_open_msc,
            sym.last_time_msc,
            sym.last_seq,
            sym.bid,
            sym.ask,
            tuple(sym.feed.builder.state()),
            sym.feed.windows.array().tobytes(),
        )

    before = snapshot()
    good = f.batch("EURUSD", 3)
    body = good.SerializeToString()
    t = b"".join(_varint(x) for x in good.time_msc)
    bid = np.asarray(good.bid, "<f8").tobytes()
    ask = np.asarray(good.ask, "<f8").tobytes()
    seq = b"".join(_varint(x) for x in good.sequence)
    sym_f = _field(1, b"EURUSD")
    unpacked_t = b"".join(_varint(2 << 3) + _varint(x) for x in good.time_msc)
    unreadable = {
        "cut inside the batch": _field(2, body)[:-1],
        "times unpacked": _field(2, sym_f + unpacked_t + _field(3, bid) + _field(4, ask)),
        "times in two runs": _field(
            2, sym_f + _field(2, t[:1]) + _field(2, t[1:]) + _field(3, bid) + _field(4, ask)
        ),
        "a bid cut short": _field(2, sym_f + _field(2, t) + _field(3, bid[:-1]) + _field(4, ask)),
        "a sequence's varint cut": _field(
            2, sym_f + _field(2, t) + _field(3, bid) + _field(4, ask) + _field(8, seq + b"\x80")
        ),
        "bars": pb.StreamPredictRequest(bars=[md.Bar(symbol="EURUSD", period_s=60)]).SerializeToString(),
        "a symbol it does not hold": _field(
            2, _field(1, b"USDCHF") + _field(2, t) + _field(3, bid) + _field(4, ask)
        ),
        "a group": _field(2, sym_f + b"\x4b"),
        "nothing": b"",
    }
    for name, raw in unreadable.items():
        got = NATIVE.intake_ticks(fast.intake, raw, model.timeframe_s, model.rows, fast.model_seen, MAX_TICKS)
        assert got is None, name
        assert snapshot() == before, name
    # the Python path reads the odd but valid forms to the same end as the intake reads the canonical one
    odd = _field(2, sym_f + unpacked_t + _field(3, bid) + _field(4, ask) + _field(8, seq))
    assert pb.StreamPredictRequest.FromString(odd).ticks[0] == good
    got = NATIVE.intake_ticks(
        fast.intake, _field(2, body), model.timeframe_s, model.rows, fast.model_seen, MAX_TICKS
    )
    assert got is not None and got[0] == 0
    assert sym.last_seq == good.sequence[-1] and sym.last_time_msc == good.time_msc[-1]


def test_a_request_id_hops_and_unknown_fields_around_the_batches_are_skipped(
    eurusd_ticks: pd.DataFrame, models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The intake reads the bytes the client sent (ADR 0113): fields interleaved, unknown fields in a
    # batch and around it. It must reach the Python path's state on the parsed message.
    model = models["a"]
    f = Feed(eurusd_ticks)
    fast, slow = _stream(True), _stream(False)
    unknown = _varint(99 << 3) + _varint(1)
    took = inputs = k = 0
    while f.left() > 80:
        k += 1
        parts = [pb.StreamPredictRequest(request_id=k).SerializeToString()]
        for s in ("EURUSD", "GBPUSD"):
            b = f.batch(s, 40, volume=k % 2 == 0)
            parts.append(_field(2, b.SerializeToString() + unknown))
            hop = types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_COLLECTOR_SEND, time_us=k)
            parts.append(pb.StreamPredictRequest(hops=[hop]).SerializeToString() + unknown)
        raw = b"".join(parts)
        assert raw != pb.StreamPredictRequest.FromString(raw).SerializeToString()
        before = _path(fast)["c++"]
        wf = _process(fast, raw, model, monkeypatch)
        ws = _process(slow, raw, model, monkeypatch)
        _same_work(wf, ws, f"request {k}")
        _same_state(fast, slow, f"request {k}")
        took += int(_path(fast)["c++"] - before)
        inputs += len(wf.symbols)
    assert took == k - 1  # every request but the first, whose symbols were new
    assert inputs > 50
