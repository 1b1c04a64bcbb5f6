from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HistoryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HISTORY_KIND_UNSPECIFIED: _ClassVar[HistoryKind]
    HISTORY_KIND_TICKS: _ClassVar[HistoryKind]
    HISTORY_KIND_BARS: _ClassVar[HistoryKind]

class HistoryStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HISTORY_STATUS_UNSPECIFIED: _ClassVar[HistoryStatus]
    HISTORY_STATUS_MORE: _ClassVar[HistoryStatus]
    HISTORY_STATUS_DONE: _ClassVar[HistoryStatus]
    HISTORY_STATUS_EMPTY: _ClassVar[HistoryStatus]
    HISTORY_STATUS_ERROR: _ClassVar[HistoryStatus]
    HISTORY_STATUS_PARTIAL: _ClassVar[HistoryStatus]

class TickRejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TICK_REJECT_REASON_UNSPECIFIED: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_NON_FINITE_PRICE: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_NON_POSITIVE_PRICE: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_CROSSED_QUOTE: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_UNKNOWN_SYMBOL: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_FUTURE_TIMESTAMP: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_TIME_WENT_BACKWARDS: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_DUPLICATE_SEQUENCE: _ClassVar[TickRejectReason]
    TICK_REJECT_REASON_MALFORMED_BATCH: _ClassVar[TickRejectReason]
HISTORY_KIND_UNSPECIFIED: HistoryKind
HISTORY_KIND_TICKS: HistoryKind
HISTORY_KIND_BARS: HistoryKind
HISTORY_STATUS_UNSPECIFIED: HistoryStatus
HISTORY_STATUS_MORE: HistoryStatus
HISTORY_STATUS_DONE: HistoryStatus
HISTORY_STATUS_EMPTY: HistoryStatus
HISTORY_STATUS_ERROR: HistoryStatus
HISTORY_STATUS_PARTIAL: HistoryStatus
TICK_REJECT_REASON_UNSPECIFIED: TickRejectReason
TICK_REJECT_REASON_NON_FINITE_PRICE: TickRejectReason
TICK_REJECT_REASON_NON_POSITIVE_PRICE: TickRejectReason
TICK_REJECT_REASON_CROSSED_QUOTE: TickRejectReason
TICK_REJECT_REASON_UNKNOWN_SYMBOL: TickRejectReason
TICK_REJECT_REASON_FUTURE_TIMESTAMP: TickRejectReason
TICK_REJECT_REASON_TIME_WENT_BACKWARDS: TickRejectReason
TICK_REJECT_REASON_DUPLICATE_SEQUENCE: TickRejectReason
TICK_REJECT_REASON_MALFORMED_BATCH: TickRejectReason

class Tick(_message.Message):
    __slots__ = ("symbol", "time_msc", "bid", "ask", "last", "volume", "flags", "sequence")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    time_msc: int
    bid: float
    ask: float
    last: float
    volume: float
    flags: int
    sequence: int
    def __init__(self, symbol: _Optional[str] = ..., time_msc: _Optional[int] = ..., bid: _Optional[float] = ..., ask: _Optional[float] = ..., last: _Optional[float] = ..., volume: _Optional[float] = ..., flags: _Optional[int] = ..., sequence: _Optional[int] = ...) -> None: ...

class TickBatch(_message.Message):
    __slots__ = ("symbol", "time_msc", "bid", "ask", "last", "volume", "flags", "sequence")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    time_msc: _containers.RepeatedScalarFieldContainer[int]
    bid: _containers.RepeatedScalarFieldContainer[float]
    ask: _containers.RepeatedScalarFieldContainer[float]
    last: _containers.RepeatedScalarFieldContainer[float]
    volume: _containers.RepeatedScalarFieldContainer[float]
    flags: _containers.RepeatedScalarFieldContainer[int]
    sequence: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, symbol: _Optional[str] = ..., time_msc: _Optional[_Iterable[int]] = ..., bid: _Optional[_Iterable[float]] = ..., ask: _Optional[_Iterable[float]] = ..., last: _Optional[_Iterable[float]] = ..., volume: _Optional[_Iterable[float]] = ..., flags: _Optional[_Iterable[int]] = ..., sequence: _Optional[_Iterable[int]] = ...) -> None: ...

class Bar(_message.Message):
    __slots__ = ("symbol", "period_s", "open_time_msc", "open", "high", "low", "close", "tick_volume", "real_volume", "spread_points", "spread_mean")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    TICK_VOLUME_FIELD_NUMBER: _ClassVar[int]
    REAL_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SPREAD_POINTS_FIELD_NUMBER: _ClassVar[int]
    SPREAD_MEAN_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    period_s: int
    open_time_msc: int
    open: float
    high: float
    low: float
    close: float
    tick_volume: int
    real_volume: float
    spread_points: int
    spread_mean: float
    def __init__(self, symbol: _Optional[str] = ..., period_s: _Optional[int] = ..., open_time_msc: _Optional[int] = ..., open: _Optional[float] = ..., high: _Optional[float] = ..., low: _Optional[float] = ..., close: _Optional[float] = ..., tick_volume: _Optional[int] = ..., real_volume: _Optional[float] = ..., spread_points: _Optional[int] = ..., spread_mean: _Optional[float] = ...) -> None: ...

class BarBatch(_message.Message):
    __slots__ = ("bars",)
    BARS_FIELD_NUMBER: _ClassVar[int]
    bars: _containers.RepeatedCompositeFieldContainer[Bar]
    def __init__(self, bars: _Optional[_Iterable[_Union[Bar, _Mapping]]] = ...) -> None: ...

class SymbolInfo(_message.Message):
    __slots__ = ("symbol", "digits", "point", "contract_size", "volume_min", "volume_max", "volume_step", "tick_size", "tick_value", "currency_base", "currency_profit", "description")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_SIZE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_MIN_FIELD_NUMBER: _ClassVar[int]
    VOLUME_MAX_FIELD_NUMBER: _ClassVar[int]
    VOLUME_STEP_FIELD_NUMBER: _ClassVar[int]
    TICK_SIZE_FIELD_NUMBER: _ClassVar[int]
    TICK_VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_BASE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_PROFIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    digits: int
    point: float
    contract_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    tick_size: float
    tick_value: float
    currency_base: str
    currency_profit: str
    description: str
    def __init__(self, symbol: _Optional[str] = ..., digits: _Optional[int] = ..., point: _Optional[float] = ..., contract_size: _Optional[float] = ..., volume_min: _Optional[float] = ..., volume_max: _Optional[float] = ..., volume_step: _Optional[float] = ..., tick_size: _Optional[float] = ..., tick_value: _Optional[float] = ..., currency_base: _Optional[str] = ..., currency_profit: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...
