"""Per-stream market state: input validation, bars from ticks, incremental features, model inputs.

A ``StreamState`` belongs to one StreamPredict call and dies with it (a client that disconnects frees
its state). It keeps one ``SymbolState`` per symbol: the kairos.features bar builder and online feature
state, a ring of the latest feature rows, the latest quote and the watermarks (time, sequence, last
bar) used to refuse out-of-order input. Refused items are reported as ``InputRejection`` and change no
state; a bad item of one symbol never touches another symbol's state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import compress
from operator import gt, le, lt
from typing import Any

import numpy as np

from kairos.features import native
from kairos.features.blocks import CrossBoard, DailyWindow
from kairos.inference.metrics import Metrics
from kairos.inference.model import ServedModel
from kairos.inference.pipeline import NATIVE, SymbolFeed, feature_rows, native_inputs, native_rows
from kairos.inference.v1 import inference_pb2 as pb
from kairos.marketdata.v1 import marketdata_pb2 as md

# Rejections itemised in one response; the rest are counted and summarised in one last entry.
MAX_LISTED_REJECTIONS = 256
INT64_MAX = 2**63 - 1


def symbol_problem(symbol: str) -> str | None:
    """Why a symbol name cannot be used (it becomes a NATS subject token), or None."""
    if not symbol:
        return "symbol is empty"
    if len(symbol) > 64:
        return f"symbol is {len(symbol)} characters long (at most 64)"
    for ch in symbol:
        if ch in "*>" or ord(ch) <= 0x20 or ord(ch) == 0x7F:
            return f"symbol {symbol!r} contains {ch!r} (no spaces, control characters, '*' or '>')"
    return None


class _Slot:
    """``SymbolState``'s watermarks and quote without the C++ kernel (with it: ``native.slot``)."""

    __slots__ = ("ask", "bid", "last_bar_open_msc", "last_seq", "last_time_msc", "model_seen", "ring")

    def __init__(self) -> None:
        self.last_bar_open_msc = -(2**62)
        self.last_time_msc = -(2**62)
        self.last_seq = 0
        self.bid = 0.0
        self.ask = 0.0
        self.model_seen = -1
        self.ring = None


class SymbolState:
    """Feature state of one symbol in one stream."""

    __slots__ = (
        "blocks",
        "capacity",
        "count",
        "daily",
        "feed",
        "n_features",
        "pos",
        "ring",
        "slot",
        "timeframe_s",
    )

    def __init__(
        self, symbol: str, timeframe_s: int, rows: int, n_features: int, blocks: tuple[str, ...] = ("base",)
    ) -> None:
        self.feed = SymbolFeed(timeframe_s)
        self.blocks = blocks
        # The daily block's own window of the last 24 hours of bars (ADR 0104), for models that use it.
        self.daily = DailyWindow(timeframe_s) if "daily" in blocks else None
        self.timeframe_s = timeframe_s
        self.n_features = n_features
        self.capacity = max(rows, 1)
        # Each row is written twice (at i and i + capacity) so the latest `rows` rows are always one
        # contiguous slice: a model input is a single copy.
        # With the C++ kernel the ring is in C++ (``rows_ring``, the same layout): a request's rows go
        # in and its model inputs come out in one call (``pipeline.native_inputs``). The watermarks
        # and the latest quote (last_bar_open_msc, last_time_msc, last_seq, bid, ask) live in ``slot``,
        # a C++ ``Slot`` that the bar and tick intakes (ADRs 0110, 0119) move too, with the feed's bar
        # builder, so every path moves one state.
        if NATIVE is not None:
            self.slot = native.slot(
                symbol, self.feed.windows, native.row_ring(self.capacity, n_features), self.feed.builder
            )
            self.ring = None
        else:
            self.slot = _Slot()
            self.ring = np.zeros((2 * self.capacity, n_features), dtype=np.float32)
        self.pos = -1
        self.count = 0  # consecutive complete rows ending at pos

    @property
    def rows_ring(self) -> Any:
        return self.slot.ring

    @property
    def last_bar_open_msc(self) -> int:
        return int(self.slot.last_bar_open_msc)

    @last_bar_open_msc.setter
    def last_bar_open_msc(self, v: int) -> None:
        self.slot.last_bar_open_msc = v

    @property
    def last_time_msc(self) -> int:
        return int(self.slot.last_time_msc)

    @last_time_msc.setter
    def last_time_msc(self, v: int) -> None:
        self.slot.last_time_msc = v

    @property
    def last_seq(self) -> int:
        return int(self.slot.last_seq)

    @last_seq.setter
    def last_seq(self, v: int) -> None:
        self.slot.last_seq = v

    @property
    def bid(self) -> float:
        return float(self.slot.bid)

    @bid.setter
    def bid(self, v: float) -> None:
        self.slot.bid = v

    @property
    def ask(self) -> float:
        return float(self.slot.ask)

    @ask.setter
    def ask(self, v: float) -> None:
        self.slot.ask = v

    def ensure_rows(self, rows: int) -> None:
        """Grow the ring for a model that needs more rows (the symbol warms up again)."""
        if rows > self.capacity:
            self.capacity = rows
            if NATIVE is not None:
                self.slot.ring = native.row_ring(rows, self.n_features)
            else:
                self.ring = np.zeros((2 * rows, self.n_features), dtype=np.float32)
            self.pos = -1
            self.count = 0

    def push_row(self, row: np.ndarray | None) -> None:
        """Append a complete feature row; None (warming up, or a non-finite row) restarts the count."""
        if row is None:
            self.count = 0  # need `rows` complete rows again
            return
        self.pos = (self.pos + 1) % self.capacity
        assert self.ring is not None
        self.ring[self.pos] = row
        self.ring[self.pos + self.capacity] = row
        self.count += 1

    def window(self, rows: int) -> np.ndarray | None:
        if self.count < rows:
            return None
        end = self.pos + self.capacity + 1
        assert self.ring is not None
        return self.ring[end - rows : end]


@dataclass
class Work:
    """What one request made due: model inputs plus, per input, its symbol, time and quote."""

    symbols: list[str] = field(default_factory=list)
    times_msc: list[int] = field(default_factory=list)
    bids: list[float] = field(default_factory=list)
    asks: list[float] = field(default_factory=list)
    windows: list[np.ndarray] = field(default_factory=list)
    rejections: list[pb.InputRejection] = field(default_factory=list)
    unlisted_rejections: int = 0
    # Bars closed by this request, in order: (state, symbol, bar open ms, bid, ask).
    closed: list[tuple[SymbolState, str, int, float, float]] = field(default_factory=list)
    # Per closed bar, with the C++ kernel: its symbol's C++ bar window and the bar's fields, pushed in
    # one call by _features; with the numpy kernel: its bar window once full, else None.
    bar_windows: list[Any] = field(default_factory=list)
    bar_fields: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)
    # Per closed bar: its daily-block row (models with the daily block, ADR 0104), else None.
    closed_daily: list[np.ndarray | None] = field(default_factory=list)
    # Per input: the bar's (open, close, mean spread, low, high), for shadow accounting (kairos.shadow).
    prices: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    closed_prices: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    # The model inputs (n, rows, n_features) that ``windows`` are views of, when _features built them.
    x: np.ndarray | None = None

    def inputs(self) -> np.ndarray:
        return self.x if self.x is not None else np.stack(self.windows)

    def predicted_rows(self) -> np.ndarray:
        """The feature rows the predictions are for: each window's last (what the drift monitor sees)."""
        return self.x[:, -1] if self.x is not None else np.stack([w[-1] for w in self.windows])

    def drop_inputs(self) -> None:
        """Forget the model inputs made due (a warm-up request): the state they came from stays."""
        for col in (self.symbols, self.times_msc, self.bids, self.asks, self.windows, self.prices):
            col.clear()
        self.x = None


class StreamState:
    """Everything one StreamPredict call remembers."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        allowed_symbols: frozenset[str],
        max_ticks_per_batch: int,
        max_bars_per_request: int,
        max_symbols: int,
        any_symbol: bool = False,
        bar_intake: bool = True,
        keep_prices: bool = True,
    ) -> None:
        self.metrics = metrics
        # Each input's bar prices (Work.prices) are read only by the shadow evaluator: without one
        # the C++ bar intake does not make them.
        self.keep_prices = keep_prices
        self.any_symbol = any_symbol
        self.allowed = allowed_symbols
        self.max_ticks = max_ticks_per_batch
        self.max_bars = max_bars_per_request
        self.max_symbols = max_symbols
        self.symbols: dict[str, SymbolState] = {}
        # Every symbol's latest base rows, for models with the cross block (ADR 0104); made on first use.
        self.board: CrossBoard | None = None
        # The intakes in C++ (ADRs 0110, 0119): a request of bars only, or of ticks only, every one of
        # them good, is taken in one call from its bytes; any other request (both at once, a refusal
        # to word, a new symbol, a new model) goes the Python way below. Every path moves the same
        # state (``SymbolState.slot``).
        self.intake = native.intake() if NATIVE is not None and bar_intake else None
        # Models this stream has run, counted: a symbol's slot carries the count it was last checked
        # against (its card, timeframe, rows, blocks), and the intake takes it only for that model.
        self.model_seen = 0
        self._last_model: ServedModel | None = None
        self._intake_cpp = metrics.bar_intake.labels("c++")
        self._intake_python = metrics.bar_intake.labels("python")
        self._ticks_cpp = metrics.tick_intake.labels("c++")
        self._ticks_python = metrics.tick_intake.labels("python")

    def close(self) -> None:
        self.metrics.symbol_states.dec(len(self.symbols))
        self.symbols.clear()
        if self.intake is not None:
            self.intake.clear()

    def _reject(self, work: Work, fld: str, reason: str, description: str, symbol: str = "") -> None:
        self.metrics.rejected.labels(reason).inc()
        if len(work.rejections) < MAX_LISTED_REJECTIONS:
            work.rejections.append(
                pb.InputRejection(field=fld, reason=reason, description=description, symbol=symbol)
            )
        else:
            work.unlisted_rejections += 1

    def _state_for(self, work: Work, fld: str, symbol: str, model: ServedModel) -> SymbolState | None:
        if model.symbols and symbol not in model.symbols and not self.any_symbol:
            self._reject(
                work,
                fld,
                "SYMBOL_NOT_IN_CARD",
                f"model {model.name} {model.version} was validated on {', '.join(sorted(model.symbols))} "
                f"only, not {symbol!r}",
                symbol,
            )
            return None
        st = self.symbols.get(symbol)
        if st is not None:
            # a swap to a model of another timeframe or other feature blocks: the symbol warms up again
            if st.timeframe_s != model.timeframe_s or st.blocks != model.blocks:
                st = None
                del self.symbols[symbol]
                if self.intake is not None:
                    self.intake.remove(symbol)
                self.metrics.symbol_states.dec()
            else:
                st.ensure_rows(model.rows)
                return st
        problem = symbol_problem(symbol)
        if problem is not None:
            self._reject(work, fld, "INVALID_SYMBOL", problem, symbol)
            return None
        if self.allowed and symbol not in self.allowed:
            self._reject(work, fld, "UNKNOWN_SYMBOL", f"symbol {symbol!r} is not served here", symbol)
            return None
        if len(self.symbols) >= self.max_symbols:
            self._reject(
                work, fld, "TOO_MANY_SYMBOLS", f"stream already holds {self.max_symbols} symbols", symbol
            )
            return None
        st = SymbolState(symbol, model.timeframe_s, model.rows, model.n_features, model.blocks)
        self.symbols[symbol] = st
        if self.intake is not None:
            self.intake.add(symbol, st.slot)
        self.metrics.symbol_states.inc()
        return st

    def _features(self, work: Work, model: ServedModel) -> None:
        """Feature rows for every bar the request closed (one kernel run), then the model inputs due."""
        rows: np.ndarray | None
        if NATIVE is not None:
            # One call pushes every bar into its symbol's C++ window and returns the rows of the full ones.
            rows, ready = native_rows(work.bar_windows, work.bar_fields)
        else:
            ready = [w is not None for w in work.bar_windows]
            windows = [w for w in work.bar_windows if w is not None]
            rows = feature_rows(windows) if windows else None
        n_due = len(rows) if rows is not None else 0
        if n_due == 0:
            rows = None
        if rows is not None and model.blocks != ("base",):
            rows = self._block_rows(work, model, rows, ready)
        if NATIVE is not None:
            self._native_inputs(work, model, rows, ready)
            return
        finite = np.isfinite(rows).all(axis=1).tolist() if rows is not None else []
        # The model inputs are copied once, straight into the array the model runs on (a later bar
        # of the same symbol in this request overwrites the ring, so a view would not do).
        x = np.empty((n_due, model.rows, model.n_features), dtype=np.float32)
        n_rows = model.rows
        k = m = 0
        for j, (st, symbol, bar_open_msc, bid, ask) in enumerate(work.closed):
            if not ready[j]:
                st.push_row(None)
                continue
            assert rows is not None
            st.push_row(rows[k] if finite[k] else None)
            k += 1
            win = st.window(n_rows)
            if win is None:
                continue
            xm = x[m]
            xm[...] = win
            m += 1
            work.symbols.append(symbol)
            work.times_msc.append(bar_open_msc + st.timeframe_s * 1000)  # stamped at the bar's close
            work.bids.append(bid)
            work.asks.append(ask)
            work.windows.append(xm)
            work.prices.append(work.closed_prices[j])
        if m:
            work.x = x[:m]

    def _native_inputs(
        self, work: Work, model: ServedModel, rows: np.ndarray | None, ready: list[bool]
    ) -> None:
        """``_features``' second half with the C++ rings: one call appends the rows and copies the inputs."""
        closed = work.closed
        if rows is None:
            rows = np.empty((0, model.n_features))
        x, due = native_inputs([c[0].rows_ring for c in closed], ready, rows, model.rows)
        if not len(x):
            return
        made = list(compress(closed, due))
        work.symbols = [c[1] for c in made]
        work.times_msc = [c[2] + c[0].timeframe_s * 1000 for c in made]  # stamped at the bar's close
        work.bids = [c[3] for c in made]
        work.asks = [c[4] for c in made]
        work.prices = list(compress(work.closed_prices, due))
        work.windows = list(x)
        work.x = x

    def _block_rows(self, work: Work, model: ServedModel, base: np.ndarray, ready: list[bool]) -> np.ndarray:
        """Base rows widened with the model's daily and cross columns (ADR 0104), same row order."""
        schema = model.schema
        out = np.empty((len(base), schema.n_features))
        out[:, : base.shape[1]] = base
        due = [(c, d) for c, d, r in zip(work.closed, work.closed_daily, ready, strict=True) if r]
        if schema.has("daily"):
            sl = schema.block_slice("daily")
            for k, (_, daily) in enumerate(due):
                out[k, sl] = daily if daily is not None else np.nan
        if schema.has("cross"):
            board = self.board
            if board is None:
                board = self.board = CrossBoard(self.max_symbols)
            # In arrival order, each bar's row then its record: another symbol's bar counts for bar t
            # only if it opened before t, so two symbols' bars of the same minute may come in either
            # order (the board keeps a few bars per symbol for that).
            sl = schema.block_slice("cross")
            others = sorted(model.symbols)
            for k, (c, _) in enumerate(due):
                out[k, sl] = board.row(c[1], c[2], others, model.timeframe_s)
                board.record(c[1], c[2], base[k])
        return out

    def process(self, req: pb.StreamPredictRequest, model: ServedModel, raw: bytes | None = None) -> Work:
        """The request's work. ``raw``: the bytes ``req`` was parsed from (the C++ bar intake reads
        them; without them it reads ``req.SerializeToString()``)."""
        work = Work()
        if not req.ticks and not req.bars:
            self._reject(work, "", "EMPTY_REQUEST", "request carries neither ticks nor bars")
            return work
        if model is not self._last_model:
            self._last_model = model
            self.model_seen += 1
        if self.intake is not None and not (req.ticks and req.bars):
            taken = None
            if model.blocks == ("base",):
                taken = (NATIVE.intake_ticks if req.ticks else NATIVE.intake_bars)(
                    self.intake,
                    raw if raw is not None else req.SerializeToString(),
                    model.timeframe_s,
                    model.rows,
                    self.model_seen,
                    self.max_ticks if req.ticks else self.max_bars,
                    self.keep_prices,
                )
            if taken is not None:
                (self._ticks_cpp if req.ticks else self._intake_cpp).inc()
                self._taken(work, req, taken)
                return work
            (self._ticks_python if req.ticks else self._intake_python).inc()
        for i, batch in enumerate(req.ticks):
            self._ticks(work, i, batch, model)
        if len(req.bars) > self.max_bars:
            self._reject(
                work,
                "bars",
                "OVERSIZED_BATCH",
                f"{len(req.bars)} bars in one request (at most {self.max_bars})",
            )
        else:
            for i, bar in enumerate(req.bars):
                self._bar(work, i, bar, model)
        if work.closed:
            self._features(work, model)
        if req.warmup:
            # Warm-up (ADR 0105): the state moved exactly as for live input, but nothing is predicted,
            # signalled or accounted; the response carries only the rejections.
            self.metrics.warmup_bars.inc(len(work.closed))
            work.drop_inputs()
        if work.unlisted_rejections:
            work.rejections.append(
                pb.InputRejection(
                    field="",
                    reason="MORE_REJECTIONS",
                    description=f"{work.unlisted_rejections} more refused items are counted but not listed",
                )
            )
        return work

    def _taken(self, work: Work, req: pb.StreamPredictRequest, taken: tuple[Any, ...]) -> None:
        """The Work of a request the bar intake took: its model inputs, or none for a warm-up."""
        n, x, symbols, times_msc, bids, asks, prices = taken
        if req.warmup:
            self.metrics.warmup_bars.inc(n)
            return
        if len(x):
            work.x = x
            work.windows = list(x)
            work.symbols = symbols
            work.times_msc = times_msc
            work.bids = bids
            work.asks = asks
            work.prices = prices

    def _ticks(self, work: Work, i: int, batch: md.TickBatch, model: ServedModel) -> None:
        fld = f"ticks[{i}]"
        sym = batch.symbol
        times_col = batch.time_msc
        n = len(times_col)
        if n == 0:
            self._reject(work, fld, "EMPTY_BATCH", "tick batch has no ticks", sym)
            return
        if n > self.max_ticks:
            self._reject(
                work, fld, "OVERSIZED_BATCH", f"{n} ticks in one batch (at most {self.max_ticks})", sym
            )
            return
        bid_col, ask_col, vol_col, seq_col = batch.bid, batch.ask, batch.volume, batch.sequence
        nb, na, nv, ns, nl, nf = (
            len(bid_col),
            len(ask_col),
            len(vol_col),
            len(seq_col),
            len(batch.last),
            len(batch.flags),
        )
        # bid and ask are required; the other columns may be empty (all zero) or complete.
        if nb != n or na != n or (nv and nv != n) or (ns and ns != n) or (nl and nl != n) or (nf and nf != n):
            lengths = {"bid": nb, "ask": na, "last": nl, "volume": nv, "flags": nf, "sequence": ns}
            self._reject(
                work, fld, "MALFORMED_BATCH", f"column lengths differ: time_msc has {n}, {lengths}", sym
            )
            return
        st = self.symbols.get(sym)
        if (
            st is None
            or st.timeframe_s != model.timeframe_s
            or st.capacity < model.rows
            or st.blocks != model.blocks
            or (model.symbols and sym not in model.symbols and not self.any_symbol)  # a narrower card
        ):
            st = self._state_for(work, fld, sym, model)
            if st is None:
                return
        st.slot.model_seen = self.model_seen  # checked against this model: the intakes may take its input
        times = list(times_col)
        bids = list(bid_col)
        asks = list(ask_col)
        vols = list(vol_col) if nv else None
        seqs = list(seq_col) if ns else None
        isfinite = math.isfinite
        if (
            isfinite(sum(bids) + sum(asks))  # NaN and inf propagate (an overflow only takes the slow path)
            and min(bids) > 0.0
            and min(asks) > 0.0
            and not any(map(gt, bids, asks))
            and times[0] >= st.last_time_msc
            and all(map(le, times[:-1], times[1:]))
            and (seqs is None or (seqs[0] > st.last_seq and all(map(lt, seqs[:-1], seqs[1:]))))
        ):
            # Every tick passes the checks below: take them a bar at a time (the same state, the same
            # bars, ~10x less Python per request; ADR 0108).
            if seqs is not None:
                st.last_seq = seqs[-1]
            st.last_time_msc = times[-1]
            st.bid, st.ask = bids[-1], asks[-1]
            for bar, j in st.feed.builder.add_ticks(times, bids, asks, vols):
                _tick_bar(work, st, sym, bar, bids[j], asks[j])
            return
        for j in range(n):
            t, b, a = times[j], bids[j], asks[j]
            if not (isfinite(b) and isfinite(a)):
                col = "bid" if not isfinite(b) else "ask"
                self._reject(work, f"{fld}.{col}[{j}]", "NON_FINITE_PRICE", f"bid {b}, ask {a}", sym)
                continue
            if b <= 0.0 or a <= 0.0:
                col = "bid" if b <= 0.0 else "ask"
                self._reject(work, f"{fld}.{col}[{j}]", "NON_POSITIVE_PRICE", f"bid {b}, ask {a}", sym)
                continue
            if b > a:
                self._reject(work, f"{fld}.bid[{j}]", "CROSSED_QUOTE", f"bid {b} > ask {a}", sym)
                continue
            if t < st.last_time_msc:
                self._reject(
                    work,
                    f"{fld}.time_msc[{j}]",
                    "TIME_WENT_BACKWARDS",
                    f"time {t} < last time {st.last_time_msc} for {sym}",
                    sym,
                )
                continue
            if seqs is not None:
                s = seqs[j]
                if s <= st.last_seq:
                    self._reject(
                        work,
                        f"{fld}.sequence[{j}]",
                        "DUPLICATE_SEQUENCE",
                        f"sequence {s} <= last sequence {st.last_seq} for {sym}",
                        sym,
                    )
                    continue
                st.last_seq = s
            st.last_time_msc = t
            st.bid, st.ask = b, a
            for bar in st.feed.add_tick(t, b, a, vols[j] if vols is not None else 0.0):
                _tick_bar(work, st, sym, bar, b, a)

    def _bar(self, work: Work, i: int, bar: md.Bar, model: ServedModel) -> None:
        # The field name (bars[i]) is formatted only for a refusal or a new symbol, not for every bar.
        # Each field read once (a protobuf attribute read is a C call); the checks of bar_problem run
        # inline on them, bar_problem itself only for a refused bar's description.
        sym = bar.symbol
        period, open_msc = bar.period_s, bar.open_time_msc
        o, h, lo, c, sp, tv = bar.open, bar.high, bar.low, bar.close, bar.spread_mean, bar.tick_volume
        tf = model.timeframe_s
        if not (
            period == tf
            and math.isfinite(o + h + lo + c + sp)
            and o > 0.0
            and c > 0.0
            and lo > 0.0
            and lo <= o
            and lo <= c
            and h >= o
            and h >= c
            and sp >= 0.0
            and open_msc % (period * 1000) == 0
        ):
            problem = bar_problem(bar, tf)
            if problem is not None:
                self._reject(work, f"bars[{i}]", problem[0], problem[1], sym)
                return
        st = self.symbols.get(sym)
        if st is None or st.timeframe_s != tf or st.capacity < model.rows or st.blocks != model.blocks:
            st = self._state_for(work, f"bars[{i}]", sym, model)
            if st is None:
                return
        elif model.symbols and sym not in model.symbols and not self.any_symbol:
            st = self._state_for(work, f"bars[{i}]", sym, model)  # refuses it (a swap to a narrower card)
            if st is None:
                return
        st.slot.model_seen = self.model_seen  # checked against this model: the intake may take its bars
        if open_msc <= st.last_bar_open_msc:
            self._reject(
                work,
                f"bars[{i}].open_time_msc",
                "TIME_WENT_BACKWARDS",
                f"bar open {open_msc} <= last bar open {st.last_bar_open_msc} for {sym}",
                sym,
            )
            return
        st.last_bar_open_msc = open_msc
        # (at most the largest int64: the intake's slot holds one; no tick time can exceed it anyway)
        end = min(open_msc + period * 1000 - 1, INT64_MAX)
        if end > st.last_time_msc:
            st.last_time_msc = end
        st.bid = c
        st.ask = c + sp
        _close(work, st, sym, open_msc, o, h, lo, c, sp, tv, c, c + sp)


def _tick_bar(work: Work, st: SymbolState, sym: str, bar: Any, bid: float, ask: float) -> None:
    """A bar that ticks closed; (bid, ask) is the closing tick's quote, the one the prediction is made at."""
    if bar.open_time_msc <= st.last_bar_open_msc:
        return  # that minute already came as a closed Bar on this stream: never twice
    st.last_bar_open_msc = bar.open_time_msc
    _close(
        work,
        st,
        sym,
        bar.open_time_msc,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.spread_mean,
        bar.tick_volume,
        bid,
        ask,
    )


def _close(
    work: Work,
    st: SymbolState,
    sym: str,
    open_msc: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    sp: float,
    tv: float,
    bid: float,
    ask: float,
) -> None:
    """Record a bar the request closed (its fields read once): its base window, prices, daily row."""
    work.closed.append((st, sym, open_msc, bid, ask))
    feed = st.feed
    if feed.windows is not None:
        work.bar_windows.append(feed.windows)  # pushed by _features, all bars of the request at once
        work.bar_fields.append((open_msc, h, lo, c, sp, tv))
    else:
        work.bar_windows.append(feed.push(open_msc, h, lo, c, sp, tv))
    work.closed_prices.append((o, c, sp, lo, h))
    daily = st.daily
    work.closed_daily.append(None if daily is None else daily.push(open_msc, h, lo, c))


def bar_problem(bar: md.Bar, timeframe_s: int) -> tuple[str, str] | None:
    """(reason, description) if a bar cannot be used by a model of this timeframe, else None."""
    period = bar.period_s
    if period != timeframe_s:
        return "PERIOD_MISMATCH", f"bar period {period} s, the model uses {timeframe_s} s bars"
    o, h, lo, c, sp = bar.open, bar.high, bar.low, bar.close, bar.spread_mean
    # One sum tells finite from not (NaN and inf propagate); the slow path only runs on bad bars.
    if not math.isfinite(o + h + lo + c + sp):
        return "NON_FINITE_PRICE", f"OHLC {(o, h, lo, c)}, spread_mean {sp}"
    if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
        return "NON_POSITIVE_PRICE", f"OHLC {(o, h, lo, c)}"
    if bar.open_time_msc % (period * 1000) != 0:
        return "INVALID_BAR", f"open_time_msc {bar.open_time_msc} is not a multiple of {period} s"
    if lo > o or lo > c or h < o or h < c:
        return "INVALID_BAR", f"OHLC {(o, h, lo, c)}: low/high do not bound open and close"
    if sp < 0.0:
        return "INVALID_BAR", f"negative spread_mean {sp}"
    return None
