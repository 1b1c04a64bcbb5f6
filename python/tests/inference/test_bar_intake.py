"""The bar intake in C++ (ADR 0110) against the Python path it stands in for, on real GBPUSD M1 bars.

A stream's request of bars only, every one good and of a symbol already checked against the model,
is taken whole by ``Kernel.intake_bars`` from the request's bytes; any other request goes through
``StreamState``'s Python path. Both must leave the same state and make the same model inputs, bit for
bit: each test runs one request schedule through a stream with the intake and one without it and
compares them after every request, and checks which path took each request (so a schedule the intake
never takes fails).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import proto_bars

from kairos.inference.metrics import Metrics
from kairos.inference.model import ServedModel, build_served_model
from kairos.inference.pipeline import NATIVE, pipeline_spec
from kairos.inference.streams import StreamState, Work
from kairos.inference.v1 import inference_pb2 as pb
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.types.v1 import types_pb2

SYMBOLS = ["GBPUSD", "EURUSD", "USDJPY", "AUDUSD"]


def _served(model_path: Path) -> ServedModel:
    return build_served_model(
        model_path,
        name=None,
        version=None,
        source_uri=str(model_path),
        pipeline=pipeline_spec(),
        max_batch=256,
    )


def _stream(intake: bool) -> StreamState:
    return StreamState(
        Metrics(),
        allowed_symbols=frozenset(),
        max_ticks_per_batch=1000,
        max_bars_per_request=64,
        max_symbols=16,
        bar_intake=intake,
    )


def _series(gbpusd: pd.DataFrame) -> dict[str, list[md.Bar]]:
    """Each symbol its own stretch of the real series (its own prices and times), 700 bars. The file
    has no tick counts: the bar's range in points stands in, so the activity feature sees real
    variation instead of zeros."""
    out = {}
    for k, s in enumerate(SYMBOLS):
        bars = proto_bars(gbpusd.iloc[k * 500 : k * 500 + 700].reset_index(drop=True), s)
        for b in bars:
            b.tick_volume = round((b.high - b.low) / 1e-5)
        out[s] = bars
    return out


def _copy(b: md.Bar, **changes: float | int) -> md.Bar:
    out = md.Bar()
    out.CopyFrom(b)
    for k, v in changes.items():
        setattr(out, k, v)
    return out


def _path(st: StreamState) -> dict[str, float]:
    return {p: st.metrics.bar_intake.labels(p)._value.get() for p in ("c++", "python")}


def _same_work(a: Work, b: Work, step: str) -> None:
    assert a.symbols == b.symbols, step
    assert a.times_msc == b.times_msc, step
    assert a.bids == b.bids and a.asks == b.asks, step
    assert a.prices == b.prices, step
    assert [(r.field, r.reason, r.description, r.symbol) for r in a.rejections] == [
        (r.field, r.reason, r.description, r.symbol) for r in b.rejections
    ], step
    if a.symbols:
        xa, xb = a.inputs(), b.inputs()
        assert xa.dtype == xb.dtype == np.float32 and xa.shape == xb.shape, step
        assert np.array_equal(xa, xb), step
        assert len(a.windows) == len(b.windows) == len(a.symbols), step


def _same_state(a: StreamState, b: StreamState, step: str) -> None:
    assert sorted(a.symbols) == sorted(b.symbols), step
    for sym, sa in a.symbols.items():
        sb = b.symbols[sym]
        for f in ("last_bar_open_msc", "last_time_msc", "bid", "ask", "last_seq", "capacity"):
            assert getattr(sa, f) == getattr(sb, f), (step, sym, f)
        assert np.array_equal(sa.feed.windows.array(), sb.feed.windows.array()), (step, sym)
        assert sa.feed.windows.count == sb.feed.windows.count, (step, sym)
        assert sa.rows_ring.count == sb.rows_ring.count, (step, sym)


Step = tuple[str, Callable[[], pb.StreamPredictRequest], str]


def took(before: dict[str, float], after: dict[str, float]) -> str:
    """Which path's counter a request moved: "c++", "python", or "-" (neither)."""
    return "c++" if after["c++"] > before["c++"] else "python" if after["python"] > before["python"] else "-"


def _run(steps: list[Step], models: dict[str, ServedModel]) -> int:
    """Each step through both streams; returns how many the intake took."""
    fast, slow = _stream(True), _stream(False)
    for name, make, path in steps:
        model = models[name.split(":")[0]] if ":" in name else models["a"]
        before = _path(fast)
        req = make()
        wf = fast.process(req, model)
        ws = slow.process(pb.StreamPredictRequest.FromString(req.SerializeToString()), model)
        _same_work(wf, ws, name)
        _same_state(fast, slow, name)
        assert took(before, _path(fast)) == path, (name, took(before, _path(fast)))
    assert _path(slow) == {"c++": 0.0, "python": 0.0}
    return int(_path(fast)["c++"])


@pytest.fixture(scope="module")
def models(model_path: Path) -> dict[str, ServedModel]:
    assert NATIVE is not None, "the C++ feature kernel is not built: run `make cpp-build`"
    # Two loads of one file are two models to a stream: the swap re-checks every symbol.
    return {"a": _served(model_path), "b": _served(model_path)}


def test_the_intake_and_the_python_path_make_the_same_inputs_and_state_on_real_bars(
    gbpusd: pd.DataFrame, models: dict[str, ServedModel]
) -> None:
    bars = _series(gbpusd)
    nxt = dict.fromkeys(SYMBOLS, 0)

    def take(*symbols: str, **changes: float | int) -> list[md.Bar]:
        out = []
        for s in symbols:
            out.append(_copy(bars[s][nxt[s]], **changes))
            nxt[s] += 1
        return out

    def req(
        *symbols: str, warmup: bool = False, **changes: float | int
    ) -> Callable[[], pb.StreamPredictRequest]:
        return lambda: pb.StreamPredictRequest(bars=take(*symbols, **changes), warmup=warmup)

    three = SYMBOLS[:3]
    steps: list[Step] = []
    # Warm-up history of three symbols, 20 bars of each per request: the first request makes the
    # states (the Python path), the rest are taken by the intake.
    steps.append(("warm-up, new symbols", req(*(three * 20), warmup=True), "python"))
    steps += [("warm-up", req(*(three * 20), warmup=True), "c++") for _ in range(12)]
    # Live: one bar of each symbol per request, then a symbol twice in one request (its first row is
    # taken before its second bar moves the window on).
    steps += [("one bar each", req(*three), "c++") for _ in range(30)]
    steps += [("a symbol twice", req("GBPUSD", "EURUSD", "GBPUSD"), "c++") for _ in range(5)]

    # A bad bar among good ones: the whole request goes the Python way, which refuses that bar only.
    def mixed(**bad: float | int) -> Callable[[], pb.StreamPredictRequest]:
        return lambda: pb.StreamPredictRequest(bars=take("GBPUSD") + take("EURUSD", **bad) + take("USDJPY"))

    def twice() -> pb.StreamPredictRequest:
        (b,) = take("EURUSD")
        return pb.StreamPredictRequest(bars=[b, b])  # the second opens with the first: backwards

    steps.append(("NaN close", mixed(close=math.nan), "python"))
    steps.append(("high below close", req("USDJPY", high=0.5), "python"))
    steps.append(("after refusals", req(*three), "c++"))
    steps.append(("bar of another period", req("GBPUSD", period_s=300), "python"))

    def back() -> pb.StreamPredictRequest:
        nxt["GBPUSD"] -= 2  # the last bar taken again: refused TIME_WENT_BACKWARDS, no state change
        r = pb.StreamPredictRequest(bars=take("GBPUSD"))
        nxt["GBPUSD"] += 1
        return r

    steps.append(("bar going back in time", back, "python"))
    steps.append(("one bar twice", twice, "python"))
    steps.append(("on again", req(*three), "c++"))
    # A new symbol: the Python path makes its state, then its bars are the intake's too.
    steps.append(("new symbol", req("AUDUSD", "GBPUSD"), "python"))
    steps += [("with the new symbol", req(*SYMBOLS), "c++") for _ in range(5)]
    # Unread fields (real_volume, spread_points, tick_volume, hops) are skipped by the intake.
    steps.append(("unread fields", req(*SYMBOLS, real_volume=3.5, spread_points=12, tick_volume=40), "c++"))

    def with_hops() -> pb.StreamPredictRequest:
        r = req(*SYMBOLS)()
        r.request_id = 99
        r.hops.add(stage=types_pb2.HOP_STAGE_COLLECTOR_SEND, time_us=123)
        return r

    steps.append(("hops and request id", with_hops, "c++"))
    # Another model: the first request re-checks each symbol in Python, then the intake again.
    steps.append(("b:swap", req(*SYMBOLS), "python"))
    steps += [("b:after the swap", req(*SYMBOLS), "c++") for _ in range(3)]
    steps.append(("b:too many bars", req(*(["GBPUSD"] * 65)), "python"))
    steps.append(("b:live warm-up", req(*SYMBOLS, warmup=True), "c++"))
    steps += [("b:to the end", req(*SYMBOLS), "c++") for _ in range(20)]
    taken = _run(steps, models)
    assert taken == sum(1 for s in steps if s[2] == "c++")


def test_ticks_and_bars_of_one_symbol_move_one_state_whichever_path_takes_the_bars(
    gbpusd: pd.DataFrame, models: dict[str, ServedModel]
) -> None:
    # Ticks (the Python path always) move the watermarks and quote the intake checks, and the other
    # way round: a tick older than the end of a bar the intake took is refused.
    bars = _series(gbpusd)["GBPUSD"]
    pos = [0]

    def bar_req(n: int) -> Callable[[], pb.StreamPredictRequest]:
        def make() -> pb.StreamPredictRequest:
            pos[0] += n
            return pb.StreamPredictRequest(bars=bars[pos[0] - n : pos[0]])

        return make

    def ticks(offset_ms: int) -> Callable[[], pb.StreamPredictRequest]:
        def make() -> pb.StreamPredictRequest:
            last = bars[pos[0] - 1]
            t = last.open_time_msc + offset_ms
            bid, ask = last.close, last.close + last.spread_mean
            batch = md.TickBatch(symbol="GBPUSD", time_msc=[t, t + 1], bid=[bid, bid], ask=[ask, ask])
            return pb.StreamPredictRequest(ticks=[batch])

        return make

    steps: list[Step] = [("first bars", bar_req(40), "python")]
    steps += [("bars", bar_req(40), "c++") for _ in range(8)]
    steps.append(("a tick inside the last bar, refused", ticks(30_000), "-"))
    steps.append(("ticks after the last bar", ticks(60_005), "-"))
    steps += [("bars after ticks", bar_req(1), "c++") for _ in range(5)]
    _run(steps, models)


def test_bytes_the_intake_cannot_read_change_nothing(
    gbpusd: pd.DataFrame, models: dict[str, ServedModel]
) -> None:
    model = models["a"]
    st = _stream(True)
    bars = _series(gbpusd)["GBPUSD"]
    for k in range(0, 300, 60):
        st.process(pb.StreamPredictRequest(bars=bars[k : k + 60]), model)
    sym = st.symbols["GBPUSD"]
    before = (sym.last_bar_open_msc, sym.last_time_msc, sym.bid, sym.ask, sym.feed.windows.array().tobytes())
    good = pb.StreamPredictRequest(bars=bars[300:302]).SerializeToString()
    unreadable = {
        "cut inside the last bar": good[:-1],
        "a length past the end": good[:1] + b"\xff\x7f" + good[2:],
        "a symbol as a varint": b"\x1a\x02\x08\x01",
        "an open price as a varint": b"\x1a\x0a\x0a\x06GBPUSD\x20\x01",
        "a group (no such field here)": b"\x1a\x01\x63",
        "an endless varint": b"\x1a\x0b\x10" + b"\xff" * 10,
        "ticks": pb.StreamPredictRequest(
            ticks=[md.TickBatch(symbol="GBPUSD", time_msc=[1], bid=[1.0], ask=[1.0])]
        ).SerializeToString(),
        "nothing": b"",
    }
    for name, raw in unreadable.items():
        got = NATIVE.intake_bars(st.intake, raw, model.timeframe_s, model.rows, st.model_seen, 64)
        assert got is None, name
        after = (
            sym.last_bar_open_msc,
            sym.last_time_msc,
            sym.bid,
            sym.ask,
            sym.feed.windows.array().tobytes(),
        )
        assert after == before, name
    # and the same state takes the good bytes
    got = NATIVE.intake_bars(st.intake, good, model.timeframe_s, model.rows, st.model_seen, 64)
    assert got is not None and got[0] == 2 and len(got[2]) == 2


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def test_a_clients_own_wire_form_takes_the_intake_to_the_python_paths_result(
    gbpusd: pd.DataFrame, models: dict[str, ServedModel]
) -> None:
    # The server hands the intake the bytes the client sent (ADR 0113), which need not be the
    # canonical form the server's own serialisation gives: the request's fields interleaved, a bar's
    # scalar given twice (the last wins), fields the schema does not know. The intake must take them
    # to what the parsed message says, the state the Python path reaches.
    model = models["a"]
    fast, slow = _stream(True), _stream(False)
    bars = _series(gbpusd)
    key = _varint(pb.StreamPredictRequest.DESCRIPTOR.fields_by_name["bars"].number << 3 | 2)
    unknown = _varint(99 << 3) + _varint(1)  # field 99, a varint: no such field in a Bar

    def odd(b: md.Bar) -> bytes:
        body = (
            md.Bar(close=999.0, high=999.0, period_s=1).SerializeToString() + unknown + b.SerializeToString()
        )
        return key + _varint(len(body)) + body

    took = 0
    for k in range(0, 330, 15):
        parts = [pb.StreamPredictRequest(request_id=k + 1).SerializeToString()]
        for i, s in enumerate(SYMBOLS):
            for b in bars[s][k : k + 15]:
                parts.append(odd(b) if i % 2 else pb.StreamPredictRequest(bars=[b]).SerializeToString())
            hop = types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_COLLECTOR_SEND, time_us=k)
            parts.append(pb.StreamPredictRequest(hops=[hop]).SerializeToString())
        raw = b"".join(parts)
        req = pb.StreamPredictRequest.FromString(raw)
        assert raw != req.SerializeToString() and req.request_id == k + 1
        before = _path(fast)["c++"]
        wf = fast.process(req, model, raw)
        ws = slow.process(pb.StreamPredictRequest.FromString(raw), model)
        _same_work(wf, ws, f"request {k}")
        _same_state(fast, slow, f"request {k}")
        took += int(_path(fast)["c++"] - before)
    assert took == 21  # every request but the first, whose symbols were new (the Python path adds them)
    assert wf.symbols


def test_a_stream_that_closes_forgets_its_symbols_in_the_intake(
    models: dict[str, ServedModel], gbpusd: pd.DataFrame
) -> None:
    st = _stream(True)
    st.process(pb.StreamPredictRequest(bars=proto_bars(gbpusd.iloc[:5], "GBPUSD")), models["a"])
    assert len(st.intake) == 1
    st.close()
    assert len(st.intake) == 0 and not st.symbols


def test_the_response_merged_from_bytes_equals_the_one_built_field_by_field(
    gbpusd: pd.DataFrame, models: dict[str, ServedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    # _fill builds a request's predictions as bytes in C++ (ADR 0110); without the kernel it builds
    # them field by field. Both must give the same response, hops, ids and float outputs included.
    from kairos.inference import service
    from kairos.inference.batcher import BatchResult

    model = models["a"]
    st = _stream(True)
    bars = _series(gbpusd)
    for k in range(0, 390, 15):
        req_bars = [b for s in SYMBOLS for b in bars[s][k : k + 15]]
        work = st.process(pb.StreamPredictRequest(bars=req_bars), model)
    assert len(work.symbols) > 20
    outputs = model.session.run([model.output_name], {model.input_name: work.inputs()})[0]
    req = pb.StreamPredictRequest(request_id=2**40 + 3)
    req.hops.add(stage=types_pb2.HOP_STAGE_COLLECTOR_SEND, time_us=1_733_450_000_000_001)
    work.times_msc[0] = -5  # a negative int64 goes out as ten bytes
    monkeypatch.setattr(service, "now_us", lambda: 1_733_450_000_000_900)
    result = BatchResult(outputs=outputs, done_us=1_733_450_000_000_500)
    # The C++ path returns the predictions' bytes, which the handler appends to the response's own
    # (ADR 0113); the numpy path fills the response and returns nothing to append.
    head = pb.StreamPredictResponse(request_id=req.request_id)
    head.rejections.add(field="bars[3]", reason="STALE_BAR", description="a rejection beside them")
    tail = service.InferenceServicer.fill(None, head, req, 1_733_450_000_000_100, model, work, result)  # type: ignore[arg-type]
    assert tail and not head.predictions
    got = pb.StreamPredictResponse.FromString(head.SerializeToString() + tail)
    monkeypatch.setattr(service, "NATIVE", None)
    want = pb.StreamPredictResponse(request_id=req.request_id)
    want.rejections.add(field="bars[3]", reason="STALE_BAR", description="a rejection beside them")
    assert service.InferenceServicer.fill(None, want, req, 1_733_450_000_000_100, model, work, result) == b""  # type: ignore[arg-type]
    assert len(got.predictions) == len(work.symbols)
    assert got == want
    assert got.SerializeToString() == want.SerializeToString()


def test_a_stream_without_a_shadow_evaluator_gets_the_same_inputs_without_the_bar_prices(
    gbpusd: pd.DataFrame, models: dict[str, ServedModel]
) -> None:
    """Only the shadow evaluator reads Work.prices: a stream without one (keep_prices=False, as the
    service opens it then) takes every request the same way, makes the same inputs, and no prices."""
    bars = _series(gbpusd)
    three = SYMBOLS[:3]
    with_prices, without = _stream(True), _stream(True)
    without.keep_prices = False
    took_cpp = 0
    for k in range(300):
        req = pb.StreamPredictRequest(bars=[bars[s][k] for s in three], warmup=k < 250)
        wa = with_prices.process(req, models["a"])
        wb = without.process(req, models["a"])
        assert wa.symbols == wb.symbols and wa.times_msc == wb.times_msc and wa.bids == wb.bids, k
        if wa.symbols:
            assert np.array_equal(wa.inputs(), wb.inputs()), k
            if _path(without)["c++"] > took_cpp:
                assert len(wa.prices) == len(wa.symbols) and wb.prices == [], k
        took_cpp = int(_path(without)["c++"])
    assert took_cpp >= 290, "the intake took the requests"
    assert _path(with_prices) == _path(without)
