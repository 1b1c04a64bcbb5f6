"""kairos.bridge.client: the MT5 bridge client for Python (the generated wire contract is kairos.bridge.v1).

``Bridge`` drives the very code the terminal's DLL runs: the pybind11 extension ``kairos_bridge_ext``
(built by ``make cpp-build`` into ``build/cpp``) links the same C++ client and calls the same C ABI
(``cpp/mt5_bridge/include/kairos_bridge.h``). Python tools use it to replay real ticks into the
collector and to act as the terminal's trading side. ``kairos.bridge.peer`` is a reference server.

The extension is found through ``$KAIROS_BRIDGE_EXT`` (path of the ``.so``) or in ``build/cpp`` of
this repository; ``BridgeNotBuiltError`` says how to build it when neither exists.
"""

from __future__ import annotations

import enum
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MQL_RATES_DTYPE",
    "MQL_TICK_DTYPE",
    "Bridge",
    "BridgeError",
    "BridgeNotBuiltError",
    "BridgeOptions",
    "Command",
    "HistoryRequest",
    "Position",
    "Status",
    "WorkingOrder",
    "load_extension",
    "quote_ticks",
]

# MQL5 MqlTick, packed: 60 bytes, the record kb_push_ticks takes.
MQL_TICK_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("bid", "<f8"),
        ("ask", "<f8"),
        ("last", "<f8"),
        ("volume", "<u8"),
        ("time_msc", "<i8"),
        ("flags", "<u4"),
        ("volume_real", "<f8"),
    ]
)
assert MQL_TICK_DTYPE.itemsize == 60

# MQL5 MqlRates, packed: 60 bytes, the record kb_history_bars takes (time: trade-server seconds).
MQL_RATES_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<i8"),
        ("spread", "<i4"),
        ("real_volume", "<i8"),
    ]
)
assert MQL_RATES_DTYPE.itemsize == 60

# kb_history_end verdicts (kairos.marketdata.v1.HistoryStatus) and kinds (HistoryKind).
HISTORY_TICKS, HISTORY_BARS = 1, 2
HISTORY_DONE, HISTORY_EMPTY, HISTORY_ERROR, HISTORY_PARTIAL = 2, 3, 4, 5

TICK_FLAG_BID = 2
TICK_FLAG_ASK = 4


class Status(enum.IntEnum):
    """KB_* status codes of the C ABI (kairos_bridge.h)."""

    OK = 0
    EMPTY = 1
    PARTIAL = 2
    COMMAND = 3
    E_NULL = -1
    E_BAD_HANDLE = -2
    E_BAD_COUNT = -3
    E_STRING_TOO_LONG = -4
    E_BAD_UTF16 = -5
    E_NON_FINITE = -6
    E_QUEUE_FULL = -7
    E_BAD_ENDPOINT = -8
    E_BAD_ARG = -9
    E_TOO_MANY = -10
    E_TRUNCATED = -11
    E_INTERNAL = -12
    E_NO_CHANNEL = -13
    E_STATE = -14
    E_TIMEOUT = -15
    E_CONNECT = -20
    E_PEER_CLOSED = -21
    E_MALFORMED_FRAME = -22
    E_HEARTBEAT_TIMEOUT = -23
    E_PEER_ERROR = -24
    E_AUTH = -25


class BridgeNotBuiltError(ImportError):
    """The extension kairos_bridge_ext was not found."""


class BridgeError(RuntimeError):
    """A bridge call returned an error status."""

    def __init__(self, call: str, status: int, text: str) -> None:
        self.status = status
        super().__init__(f"{call}: {text} (status {status})")


_EXT: ModuleType | None = None


def _candidates() -> list[Path]:
    env = os.environ.get("KAIROS_BRIDGE_EXT")
    if env:
        return [Path(env)]
    build = Path(__file__).resolve().parents[3] / "build" / "cpp"
    return sorted(build.glob("kairos_bridge_ext*.so")) + sorted(build.glob("kairos_bridge_ext*.pyd"))


def load_extension() -> ModuleType:
    """Loads kairos_bridge_ext once ($KAIROS_BRIDGE_EXT overrides the build/cpp location)."""
    global _EXT
    if _EXT is not None:
        return _EXT
    paths = _candidates()
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        where = os.environ.get("KAIROS_BRIDGE_EXT") or "build/cpp/kairos_bridge_ext*.so"
        raise BridgeNotBuiltError(
            f"the bridge extension is not built (looked for {where}); run `make cpp-build` "
            "or set KAIROS_BRIDGE_EXT to the path of kairos_bridge_ext*.so"
        )
    spec = importlib.util.spec_from_file_location("kairos_bridge_ext", path)
    if spec is None or spec.loader is None:
        raise BridgeNotBuiltError(f"{path} is not a loadable Python extension")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _EXT = module
    return module


def _check(call: str, status: int, *, allow: tuple[Status, ...] = ()) -> Status:
    if status >= 0 or status in allow:
        return Status(status)
    text = str(load_extension().status_text(status))
    raise BridgeError(call, status, text)


@dataclass(frozen=True)
class BridgeOptions:
    """Tuning of one bridge (KbOptions); None keeps the library default (docs/bridge.md)."""

    tick_queue_capacity: int | None = None
    command_queue_capacity: int | None = None
    tick_resend_frames: int | None = None
    report_queue_capacity: int | None = None
    heartbeat_interval_ms: int | None = None
    reconnect_min_ms: int | None = None
    reconnect_max_ms: int | None = None
    connect_timeout_ms: int | None = None
    close_flush_ms: int | None = None
    max_batch_ticks: int | None = None
    idle_spin_us: int | None = None
    warm_poll_us: int | None = None
    lockstep: int | None = None  # 1: Strategy Tester lockstep (tester_wait), API 4

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(v) for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True)
class Command:
    """An order command for the terminal (KbCommand); enum fields carry the bridge.proto numbers."""

    command_id: int
    kind: int
    side: int
    order_type: int
    deviation_points: int
    volume: float
    price: float
    stop_limit_price: float
    stop_loss: float
    take_profit: float
    order_ticket: int
    position_ticket: int
    expiration_msc: int
    deadline_time_us: int
    received_time_us: int
    client_order_id: str
    symbol: str


@dataclass(frozen=True)
class HistoryRequest:
    """A chunk of history the collector asks the terminal for (KbHistoryRequest); times UTC ms."""

    request_id: int
    kind: int
    period_s: int
    from_msc: int
    to_msc: int
    symbol: str


@dataclass(frozen=True)
class Position:
    """One open position for report_positions."""

    ticket: int
    symbol: str
    side: int
    volume: float
    price_open: float
    price_digits: int = 5
    volume_digits: int = 2
    money_digits: int = 2
    stop_loss: float = 0.0
    take_profit: float = 0.0
    profit: float = 0.0
    swap: float = 0.0
    magic: int = 0
    time_msc: int = 0
    client_order_id: str = ""


@dataclass(frozen=True)
class WorkingOrder:
    """One pending order for report_positions."""

    ticket: int
    symbol: str
    side: int
    order_type: int
    volume: float
    price: float
    price_digits: int = 5
    volume_digits: int = 2
    time_msc: int = 0
    client_order_id: str = ""


def quote_ticks(
    time_msc: npt.ArrayLike,
    bid: npt.ArrayLike,
    ask: npt.ArrayLike,
    flags: int = TICK_FLAG_BID | TICK_FLAG_ASK,
) -> npt.NDArray[np.void]:
    """Builds an MqlTick array from quote columns (time in ms, as MT5 reports it)."""
    t = np.asarray(time_msc, dtype=np.int64)
    out = np.zeros(t.shape[0], dtype=MQL_TICK_DTYPE)
    out["time_msc"] = t
    out["time"] = t // 1000
    out["bid"] = np.asarray(bid, dtype=np.float64)
    out["ask"] = np.asarray(ask, dtype=np.float64)
    out["flags"] = flags
    return out


class Bridge:
    """One bridge instance (what one EA opens): ticks to the collector, commands and results with
    the execution service. An empty endpoint disables that channel. Calls never block on I/O."""

    def __init__(
        self,
        collector: str = "127.0.0.1:7400",
        execution: str = "127.0.0.1:7600",
        *,
        terminal_name: str = "kairos-python",
        terminal_build: int = 0,
        company: str = "",
        server: str = "",
        account_login: int = 0,
        account_currency: str = "",
        trade_mode: int = 0,
        ea_symbol: str = "",
        magic: int = 0,
        options: BridgeOptions | None = None,
        bridge_key: str = "",
    ) -> None:
        """bridge_key is the key both services hold (`kairos up` writes it to the run directory): the
        bridge proves it in every Hello and refuses a server that cannot prove it back. Empty: no
        proof, so only a service started with --bridge-insecure accepts the connection."""
        ext = load_extension()
        self._b: Any = ext.Bridge(
            collector,
            execution,
            terminal_name,
            terminal_build,
            company,
            server,
            account_login,
            account_currency,
            trade_mode,
            ea_symbol,
            magic,
            (options or BridgeOptions()).as_dict(),
            bridge_key,
        )
        _check("kb_open", int(self._b.open_status))

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_server_offset(self, server_minus_utc_ms: int) -> None:
        """Trade-server time minus UTC; tick times are shifted back to UTC by it."""
        _check("kb_set_server_offset", self._b.set_server_offset(server_minus_utc_ms))

    def announce_symbol(
        self,
        symbol: str,
        digits: int,
        *,
        point: float | None = None,
        contract_size: float = 0.0,
        volume_min: float = 0.0,
        volume_max: float = 0.0,
        volume_step: float = 0.0,
        tick_size: float | None = None,
        tick_value: float = 0.0,
        currency_base: str = "",
        currency_profit: str = "",
        description: str = "",
    ) -> None:
        p = 10.0**-digits if point is None else point
        _check(
            "kb_announce_symbol",
            self._b.announce_symbol(
                symbol,
                digits,
                p,
                contract_size,
                volume_min,
                volume_max,
                volume_step,
                p if tick_size is None else tick_size,
                tick_value,
                currency_base,
                currency_profit,
                description,
            ),
        )

    def push_ticks(self, symbol: str, digits: int, ticks: npt.NDArray[np.void]) -> Status:
        """Queues MqlTick records (MQL_TICK_DTYPE), zero-copy. Returns OK, PARTIAL (invalid ticks
        refused) or E_QUEUE_FULL (nothing queued: push again later); raises on other errors."""
        if ticks.dtype != MQL_TICK_DTYPE:
            raise TypeError(f"ticks must have dtype kairos.bridge.client.MQL_TICK_DTYPE, not {ticks.dtype}")
        return _check(
            "kb_push_ticks",
            self._b.push_ticks(symbol, digits, np.ascontiguousarray(ticks)),
            allow=(Status.E_QUEUE_FULL,),
        )

    def push_quotes(
        self,
        symbol: str,
        digits: int,
        time_msc: npt.ArrayLike,
        bid: npt.ArrayLike,
        ask: npt.ArrayLike,
        flags: int = TICK_FLAG_BID | TICK_FLAG_ASK,
    ) -> Status:
        """Queues quote ticks from parallel arrays (as push_ticks)."""
        return _check(
            "kb_push_ticks",
            self._b.push_columns(symbol, digits, time_msc, bid, ask, flags),
            allow=(Status.E_QUEUE_FULL,),
        )

    def poll_history(self) -> HistoryRequest | None:
        """The oldest history chunk the collector asked for and the terminal has not taken, or None."""
        got = self._b.poll_history()
        if got is None:
            return None
        if isinstance(got, int):
            _check("kb_poll_history", got)
        return HistoryRequest(**got)

    def history_ticks(self, request_id: int, ticks: npt.NDArray[np.void]) -> Status:
        """Rows of a tick chunk (MQL_TICK_DTYPE, trade-server time). E_QUEUE_FULL: nothing queued."""
        if ticks.dtype != MQL_TICK_DTYPE:
            raise TypeError(f"ticks must have dtype MQL_TICK_DTYPE, not {ticks.dtype}")
        return _check(
            "kb_history_ticks",
            self._b.history_ticks(request_id, np.ascontiguousarray(ticks)),
            allow=(Status.E_QUEUE_FULL,),
        )

    def history_bars(self, request_id: int, rates: npt.NDArray[np.void]) -> Status:
        """Rows of a bar chunk (MQL_RATES_DTYPE, trade-server time). E_QUEUE_FULL: nothing queued."""
        if rates.dtype != MQL_RATES_DTYPE:
            raise TypeError(f"rates must have dtype MQL_RATES_DTYPE, not {rates.dtype}")
        return _check(
            "kb_history_bars",
            self._b.history_bars(request_id, np.ascontiguousarray(rates)),
            allow=(Status.E_QUEUE_FULL,),
        )

    def history_end(
        self, request_id: int, status: int, first_available_msc: int = 0, message: str = ""
    ) -> Status:
        """The verdict on a chunk (HISTORY_DONE, _EMPTY, _ERROR, _PARTIAL). E_QUEUE_FULL: call again."""
        return _check(
            "kb_history_end",
            self._b.history_end(request_id, status, first_available_msc, message),
            allow=(Status.E_QUEUE_FULL,),
        )

    def tester_wait(self, timeout_ms: int) -> Status:
        """kb_tester_wait (lockstep only): OK when the stack decided on every tick pushed, COMMAND when a
        command waits (poll it, report, wait again), E_TIMEOUT when timeout_ms passed (counted)."""
        return _check(
            "kb_tester_wait",
            self._b.tester_wait(timeout_ms),
            allow=(Status.COMMAND, Status.E_TIMEOUT),
        )

    def poll_command(self) -> Command | None:
        """The oldest waiting order command, or None."""
        got = self._b.poll_command()
        if got is None:
            return None
        if isinstance(got, int):
            _check("kb_poll_command", got)
        return Command(**got)

    def report_result(
        self,
        command_id: int,
        *,
        client_order_id: str,
        status: int = 1,
        retcode: int = 0,
        order_ticket: int = 0,
        deal_ticket: int = 0,
        volume: float = 0.0,
        price: float = 0.0,
        bid: float = 0.0,
        ask: float = 0.0,
        request_id: int = 0,
        price_digits: int = 5,
        volume_digits: int = 2,
        received_time_us: int = 0,
        completed_time_us: int = 0,
        comment: str = "",
    ) -> Status:
        """Reports a command's outcome (status: BridgeStatus number). E_QUEUE_FULL is returned."""
        return _check(
            "kb_report_result",
            self._b.report_result(
                command_id,
                status,
                retcode,
                order_ticket,
                deal_ticket,
                volume,
                price,
                bid,
                ask,
                request_id,
                price_digits,
                volume_digits,
                received_time_us,
                completed_time_us,
                client_order_id,
                comment,
            ),
            allow=(Status.E_QUEUE_FULL,),
        )

    def report_transaction(
        self,
        *,
        type: int,
        symbol: str,
        client_order_id: str = "",
        side: int = 0,
        order_ticket: int = 0,
        deal_ticket: int = 0,
        position_ticket: int = 0,
        mt5_order_type: int = 0,
        mt5_order_state: int = 0,
        mt5_deal_type: int = 0,
        price: float = 0.0,
        volume: float = 0.0,
        stop_loss: float = 0.0,
        take_profit: float = 0.0,
        commission: float = 0.0,
        time_msc: int = 0,
        price_digits: int = 5,
        volume_digits: int = 2,
        money_digits: int = 2,
    ) -> Status:
        """Reports a trade transaction (type: TransactionType number)."""
        return _check(
            "kb_report_transaction",
            self._b.report_transaction(
                type,
                side,
                order_ticket,
                deal_ticket,
                position_ticket,
                mt5_order_type,
                mt5_order_state,
                mt5_deal_type,
                price_digits,
                volume_digits,
                money_digits,
                price,
                volume,
                stop_loss,
                take_profit,
                commission,
                time_msc,
                client_order_id,
                symbol,
            ),
            allow=(Status.E_QUEUE_FULL,),
        )

    def report_account(
        self,
        *,
        login: int,
        currency: str,
        balance: float,
        equity: float,
        margin: float = 0.0,
        margin_free: float = 0.0,
        margin_level: float = 0.0,
        leverage: int = 0,
        trade_allowed: bool = True,
        time_msc: int = 0,
        money_digits: int = 2,
    ) -> Status:
        """Reports the account state."""
        return _check(
            "kb_report_account",
            self._b.report_account(
                login,
                balance,
                equity,
                margin,
                margin_free,
                margin_level,
                money_digits,
                leverage,
                trade_allowed,
                time_msc,
                currency,
            ),
            allow=(Status.E_QUEUE_FULL,),
        )

    def report_positions(
        self, time_msc: int, positions: Sequence[Position], orders: Sequence[WorkingOrder] = ()
    ) -> Status:
        """Reports every open position and pending order as one snapshot."""
        _check("kb_positions_begin", self._b.positions_begin(time_msc))
        for p in positions:
            _check(
                "kb_positions_add_position",
                self._b.positions_add_position(
                    p.ticket,
                    p.side,
                    p.price_digits,
                    p.volume_digits,
                    p.money_digits,
                    p.volume,
                    p.price_open,
                    p.stop_loss,
                    p.take_profit,
                    p.profit,
                    p.swap,
                    p.magic,
                    p.time_msc,
                    p.symbol,
                    p.client_order_id,
                ),
            )
        for o in orders:
            _check(
                "kb_positions_add_order",
                self._b.positions_add_order(
                    o.ticket,
                    o.side,
                    o.order_type,
                    o.price_digits,
                    o.volume_digits,
                    o.volume,
                    o.price,
                    o.time_msc,
                    o.symbol,
                    o.client_order_id,
                ),
            )
        return _check("kb_positions_end", self._b.positions_end(), allow=(Status.E_QUEUE_FULL,))

    def counters(self) -> dict[str, int]:
        """KbCounters as a dict (ticks_queued, ticks_sent, ticks_dropped, reconnects, last_error, ...)."""
        got = self._b.counters()
        if isinstance(got, int):
            _check("kb_get_counters", got)
        return {str(k): int(v) for k, v in got.items()}

    def last_error(self) -> str:
        got = self._b.last_error()
        if isinstance(got, int):
            _check("kb_last_error", got)
        return str(got)

    def drain_log(self) -> list[str]:
        """The bridge's log lines since the last call (connects, disconnects with their reason)."""
        return [str(line) for line in self._b.drain_log()]

    def close(self) -> None:
        """Flushes (bounded), stops the network thread and frees the handle; a second close is a no-op."""
        if self._b.handle != 0:
            _check("kb_close", self._b.close())
