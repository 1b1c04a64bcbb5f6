from kairos.marketdata.v1 import marketdata_pb2 as _marketdata_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchHistoryRequest(_message.Message):
    __slots__ = ("symbol", "kind", "period_s", "from_msc", "to_msc")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    FROM_MSC_FIELD_NUMBER: _ClassVar[int]
    TO_MSC_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    kind: _marketdata_pb2.HistoryKind
    period_s: int
    from_msc: int
    to_msc: int
    def __init__(self, symbol: _Optional[str] = ..., kind: _Optional[_Union[_marketdata_pb2.HistoryKind, str]] = ..., period_s: _Optional[int] = ..., from_msc: _Optional[int] = ..., to_msc: _Optional[int] = ...) -> None: ...

class FetchHistoryResponse(_message.Message):
    __slots__ = ("part", "status", "ticks", "bars", "total", "message", "first_available_msc", "terminal")
    PART_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIRST_AVAILABLE_MSC_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    part: int
    status: _marketdata_pb2.HistoryStatus
    ticks: _marketdata_pb2.TickBatch
    bars: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.Bar]
    total: int
    message: str
    first_available_msc: int
    terminal: str
    def __init__(self, part: _Optional[int] = ..., status: _Optional[_Union[_marketdata_pb2.HistoryStatus, str]] = ..., ticks: _Optional[_Union[_marketdata_pb2.TickBatch, _Mapping]] = ..., bars: _Optional[_Iterable[_Union[_marketdata_pb2.Bar, _Mapping]]] = ..., total: _Optional[int] = ..., message: _Optional[str] = ..., first_available_msc: _Optional[int] = ..., terminal: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("symbols", "ticks", "bar_periods_s")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    BAR_PERIODS_S_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    ticks: bool
    bar_periods_s: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., ticks: _Optional[bool] = ..., bar_periods_s: _Optional[_Iterable[int]] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("ticks", "bar", "symbol_info")
    TICKS_FIELD_NUMBER: _ClassVar[int]
    BAR_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_INFO_FIELD_NUMBER: _ClassVar[int]
    ticks: _marketdata_pb2.TickBatch
    bar: _marketdata_pb2.Bar
    symbol_info: _marketdata_pb2.SymbolInfo
    def __init__(self, ticks: _Optional[_Union[_marketdata_pb2.TickBatch, _Mapping]] = ..., bar: _Optional[_Union[_marketdata_pb2.Bar, _Mapping]] = ..., symbol_info: _Optional[_Union[_marketdata_pb2.SymbolInfo, _Mapping]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("source", "symbol_info", "ticks")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_INFO_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    source: str
    symbol_info: _marketdata_pb2.SymbolInfo
    ticks: _marketdata_pb2.TickBatch
    def __init__(self, source: _Optional[str] = ..., symbol_info: _Optional[_Union[_marketdata_pb2.SymbolInfo, _Mapping]] = ..., ticks: _Optional[_Union[_marketdata_pb2.TickBatch, _Mapping]] = ...) -> None: ...

class RejectCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: _marketdata_pb2.TickRejectReason
    count: int
    def __init__(self, reason: _Optional[_Union[_marketdata_pb2.TickRejectReason, str]] = ..., count: _Optional[int] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("accepted", "rejected", "rejects")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    rejected: int
    rejects: _containers.RepeatedCompositeFieldContainer[RejectCount]
    def __init__(self, accepted: _Optional[int] = ..., rejected: _Optional[int] = ..., rejects: _Optional[_Iterable[_Union[RejectCount, _Mapping]]] = ...) -> None: ...

class PublishAck(_message.Message):
    __slots__ = ("symbol", "accepted", "rejects", "last_sequence")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    accepted: int
    rejects: _containers.RepeatedCompositeFieldContainer[RejectCount]
    last_sequence: int
    def __init__(self, symbol: _Optional[str] = ..., accepted: _Optional[int] = ..., rejects: _Optional[_Iterable[_Union[RejectCount, _Mapping]]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("subscribe", "publish")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    subscribe: SubscribeRequest
    publish: PublishRequest
    def __init__(self, subscribe: _Optional[_Union[SubscribeRequest, _Mapping]] = ..., publish: _Optional[_Union[PublishRequest, _Mapping]] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("ticks", "bar", "symbol_info", "ack")
    TICKS_FIELD_NUMBER: _ClassVar[int]
    BAR_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_INFO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ticks: _marketdata_pb2.TickBatch
    bar: _marketdata_pb2.Bar
    symbol_info: _marketdata_pb2.SymbolInfo
    ack: PublishAck
    def __init__(self, ticks: _Optional[_Union[_marketdata_pb2.TickBatch, _Mapping]] = ..., bar: _Optional[_Union[_marketdata_pb2.Bar, _Mapping]] = ..., symbol_info: _Optional[_Union[_marketdata_pb2.SymbolInfo, _Mapping]] = ..., ack: _Optional[_Union[PublishAck, _Mapping]] = ...) -> None: ...

class ListSymbolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSymbolsResponse(_message.Message):
    __slots__ = ("symbols",)
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.SymbolInfo]
    def __init__(self, symbols: _Optional[_Iterable[_Union[_marketdata_pb2.SymbolInfo, _Mapping]]] = ...) -> None: ...
