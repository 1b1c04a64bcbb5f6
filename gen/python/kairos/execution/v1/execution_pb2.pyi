from kairos.types.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrderSide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_SIDE_UNSPECIFIED: _ClassVar[OrderSide]
    ORDER_SIDE_BUY: _ClassVar[OrderSide]
    ORDER_SIDE_SELL: _ClassVar[OrderSide]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_STOP_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_STOP_LIMIT: _ClassVar[OrderType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_UNSPECIFIED: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTD: _ClassVar[TimeInForce]
    TIME_IN_FORCE_DAY: _ClassVar[TimeInForce]

class OrderStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATUS_UNSPECIFIED: _ClassVar[OrderStatus]
    ORDER_STATUS_INITIALIZED: _ClassVar[OrderStatus]
    ORDER_STATUS_DENIED: _ClassVar[OrderStatus]
    ORDER_STATUS_EMULATED: _ClassVar[OrderStatus]
    ORDER_STATUS_RELEASED: _ClassVar[OrderStatus]
    ORDER_STATUS_SUBMITTED: _ClassVar[OrderStatus]
    ORDER_STATUS_ACCEPTED: _ClassVar[OrderStatus]
    ORDER_STATUS_REJECTED: _ClassVar[OrderStatus]
    ORDER_STATUS_CANCELED: _ClassVar[OrderStatus]
    ORDER_STATUS_EXPIRED: _ClassVar[OrderStatus]
    ORDER_STATUS_TRIGGERED: _ClassVar[OrderStatus]
    ORDER_STATUS_PENDING_UPDATE: _ClassVar[OrderStatus]
    ORDER_STATUS_PENDING_CANCEL: _ClassVar[OrderStatus]
    ORDER_STATUS_PARTIALLY_FILLED: _ClassVar[OrderStatus]
    ORDER_STATUS_FILLED: _ClassVar[OrderStatus]

class TradingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADING_STATE_UNSPECIFIED: _ClassVar[TradingState]
    TRADING_STATE_ACTIVE: _ClassVar[TradingState]
    TRADING_STATE_REDUCING: _ClassVar[TradingState]
    TRADING_STATE_HALTED: _ClassVar[TradingState]

class RiskDenyReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_DENY_REASON_UNSPECIFIED: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_TRADING_HALTED: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_TRADING_REDUCING: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_REDUCE_ONLY: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_SYMBOL_NOT_ALLOWED: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_INVALID_PRECISION: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_INVALID_QUANTITY_OR_PRICE: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_MAX_ORDER_QUANTITY: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_MAX_ORDER_NOTIONAL: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_MAX_POSITION: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_MAX_GROSS_EXPOSURE: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_MAX_OPEN_ORDERS: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_PRICE_COLLAR: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_QUOTE_MISSING: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_QUOTE_STALE: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_SUBMIT_RATE: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_MESSAGE_RATE: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_DUPLICATE_CLIENT_ORDER_ID: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_DUPLICATE_INTENT: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_DAILY_LOSS: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_DRAWDOWN: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_INSUFFICIENT_MARGIN: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_NOT_RECONCILED: _ClassVar[RiskDenyReason]
    RISK_DENY_REASON_INVALID_STOPS: _ClassVar[RiskDenyReason]

class LiquiditySide(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIQUIDITY_SIDE_UNSPECIFIED: _ClassVar[LiquiditySide]
    LIQUIDITY_SIDE_MAKER: _ClassVar[LiquiditySide]
    LIQUIDITY_SIDE_TAKER: _ClassVar[LiquiditySide]

class ReportType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_TYPE_UNSPECIFIED: _ClassVar[ReportType]
    REPORT_TYPE_DENIED: _ClassVar[ReportType]
    REPORT_TYPE_SUBMITTED: _ClassVar[ReportType]
    REPORT_TYPE_ACCEPTED: _ClassVar[ReportType]
    REPORT_TYPE_REJECTED: _ClassVar[ReportType]
    REPORT_TYPE_FILLED: _ClassVar[ReportType]
    REPORT_TYPE_CANCELED: _ClassVar[ReportType]
    REPORT_TYPE_CANCEL_REJECTED: _ClassVar[ReportType]
    REPORT_TYPE_EXPIRED: _ClassVar[ReportType]
    REPORT_TYPE_UPDATED: _ClassVar[ReportType]
    REPORT_TYPE_TRADING_STATE_CHANGED: _ClassVar[ReportType]
    REPORT_TYPE_PENDING_UPDATE: _ClassVar[ReportType]
    REPORT_TYPE_UPDATE_REJECTED: _ClassVar[ReportType]
    REPORT_TYPE_POSITION_UPDATED: _ClassVar[ReportType]
ORDER_SIDE_UNSPECIFIED: OrderSide
ORDER_SIDE_BUY: OrderSide
ORDER_SIDE_SELL: OrderSide
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_MARKET: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_STOP_MARKET: OrderType
ORDER_TYPE_STOP_LIMIT: OrderType
TIME_IN_FORCE_UNSPECIFIED: TimeInForce
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce
TIME_IN_FORCE_GTD: TimeInForce
TIME_IN_FORCE_DAY: TimeInForce
ORDER_STATUS_UNSPECIFIED: OrderStatus
ORDER_STATUS_INITIALIZED: OrderStatus
ORDER_STATUS_DENIED: OrderStatus
ORDER_STATUS_EMULATED: OrderStatus
ORDER_STATUS_RELEASED: OrderStatus
ORDER_STATUS_SUBMITTED: OrderStatus
ORDER_STATUS_ACCEPTED: OrderStatus
ORDER_STATUS_REJECTED: OrderStatus
ORDER_STATUS_CANCELED: OrderStatus
ORDER_STATUS_EXPIRED: OrderStatus
ORDER_STATUS_TRIGGERED: OrderStatus
ORDER_STATUS_PENDING_UPDATE: OrderStatus
ORDER_STATUS_PENDING_CANCEL: OrderStatus
ORDER_STATUS_PARTIALLY_FILLED: OrderStatus
ORDER_STATUS_FILLED: OrderStatus
TRADING_STATE_UNSPECIFIED: TradingState
TRADING_STATE_ACTIVE: TradingState
TRADING_STATE_REDUCING: TradingState
TRADING_STATE_HALTED: TradingState
RISK_DENY_REASON_UNSPECIFIED: RiskDenyReason
RISK_DENY_REASON_TRADING_HALTED: RiskDenyReason
RISK_DENY_REASON_TRADING_REDUCING: RiskDenyReason
RISK_DENY_REASON_REDUCE_ONLY: RiskDenyReason
RISK_DENY_REASON_SYMBOL_NOT_ALLOWED: RiskDenyReason
RISK_DENY_REASON_INVALID_PRECISION: RiskDenyReason
RISK_DENY_REASON_INVALID_QUANTITY_OR_PRICE: RiskDenyReason
RISK_DENY_REASON_MAX_ORDER_QUANTITY: RiskDenyReason
RISK_DENY_REASON_MAX_ORDER_NOTIONAL: RiskDenyReason
RISK_DENY_REASON_MAX_POSITION: RiskDenyReason
RISK_DENY_REASON_MAX_GROSS_EXPOSURE: RiskDenyReason
RISK_DENY_REASON_MAX_OPEN_ORDERS: RiskDenyReason
RISK_DENY_REASON_PRICE_COLLAR: RiskDenyReason
RISK_DENY_REASON_QUOTE_MISSING: RiskDenyReason
RISK_DENY_REASON_QUOTE_STALE: RiskDenyReason
RISK_DENY_REASON_SUBMIT_RATE: RiskDenyReason
RISK_DENY_REASON_MESSAGE_RATE: RiskDenyReason
RISK_DENY_REASON_DUPLICATE_CLIENT_ORDER_ID: RiskDenyReason
RISK_DENY_REASON_DUPLICATE_INTENT: RiskDenyReason
RISK_DENY_REASON_DAILY_LOSS: RiskDenyReason
RISK_DENY_REASON_DRAWDOWN: RiskDenyReason
RISK_DENY_REASON_INSUFFICIENT_MARGIN: RiskDenyReason
RISK_DENY_REASON_NOT_RECONCILED: RiskDenyReason
RISK_DENY_REASON_INVALID_STOPS: RiskDenyReason
LIQUIDITY_SIDE_UNSPECIFIED: LiquiditySide
LIQUIDITY_SIDE_MAKER: LiquiditySide
LIQUIDITY_SIDE_TAKER: LiquiditySide
REPORT_TYPE_UNSPECIFIED: ReportType
REPORT_TYPE_DENIED: ReportType
REPORT_TYPE_SUBMITTED: ReportType
REPORT_TYPE_ACCEPTED: ReportType
REPORT_TYPE_REJECTED: ReportType
REPORT_TYPE_FILLED: ReportType
REPORT_TYPE_CANCELED: ReportType
REPORT_TYPE_CANCEL_REJECTED: ReportType
REPORT_TYPE_EXPIRED: ReportType
REPORT_TYPE_UPDATED: ReportType
REPORT_TYPE_TRADING_STATE_CHANGED: ReportType
REPORT_TYPE_PENDING_UPDATE: ReportType
REPORT_TYPE_UPDATE_REJECTED: ReportType
REPORT_TYPE_POSITION_UPDATED: ReportType

class RiskDenial(_message.Message):
    __slots__ = ("reason", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: RiskDenyReason
    message: str
    def __init__(self, reason: _Optional[_Union[RiskDenyReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("client_order_id", "venue_order_id", "symbol", "side", "type", "time_in_force", "quantity", "price", "trigger_price", "status", "filled_quantity", "avg_fill_price", "reduce_only", "strategy_id", "model_name", "model_version", "venue", "denial", "reject_reason", "expire_time_us", "created_time_us", "updated_time_us", "stop_loss", "take_profit")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVG_FILL_PRICE_FIELD_NUMBER: _ClassVar[int]
    REDUCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    DENIAL_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    quantity: _types_pb2.Decimal
    price: _types_pb2.Decimal
    trigger_price: _types_pb2.Decimal
    status: OrderStatus
    filled_quantity: _types_pb2.Decimal
    avg_fill_price: _types_pb2.Decimal
    reduce_only: bool
    strategy_id: str
    model_name: str
    model_version: str
    venue: str
    denial: RiskDenial
    reject_reason: str
    expire_time_us: int
    created_time_us: int
    updated_time_us: int
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    def __init__(self, client_order_id: _Optional[str] = ..., venue_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[OrderSide, str]] = ..., type: _Optional[_Union[OrderType, str]] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., trigger_price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., status: _Optional[_Union[OrderStatus, str]] = ..., filled_quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., avg_fill_price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., reduce_only: _Optional[bool] = ..., strategy_id: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., venue: _Optional[str] = ..., denial: _Optional[_Union[RiskDenial, _Mapping]] = ..., reject_reason: _Optional[str] = ..., expire_time_us: _Optional[int] = ..., created_time_us: _Optional[int] = ..., updated_time_us: _Optional[int] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("trade_id", "client_order_id", "venue_order_id", "symbol", "side", "quantity", "price", "commission", "commission_currency", "liquidity_side", "venue", "time_us")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    VENUE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    LIQUIDITY_SIDE_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    trade_id: str
    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    quantity: _types_pb2.Decimal
    price: _types_pb2.Decimal
    commission: _types_pb2.Decimal
    commission_currency: str
    liquidity_side: LiquiditySide
    venue: str
    time_us: int
    def __init__(self, trade_id: _Optional[str] = ..., client_order_id: _Optional[str] = ..., venue_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[OrderSide, str]] = ..., quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., commission: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., commission_currency: _Optional[str] = ..., liquidity_side: _Optional[_Union[LiquiditySide, str]] = ..., venue: _Optional[str] = ..., time_us: _Optional[int] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("symbol", "net_quantity", "avg_price", "realized_pnl", "unrealized_pnl", "currency", "venue", "opened_time_us", "updated_time_us", "stop_loss", "take_profit")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    NET_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AVG_PRICE_FIELD_NUMBER: _ClassVar[int]
    REALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    UNREALIZED_PNL_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    VENUE_FIELD_NUMBER: _ClassVar[int]
    OPENED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    net_quantity: _types_pb2.Decimal
    avg_price: _types_pb2.Decimal
    realized_pnl: _types_pb2.Decimal
    unrealized_pnl: _types_pb2.Decimal
    currency: str
    venue: str
    opened_time_us: int
    updated_time_us: int
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    def __init__(self, symbol: _Optional[str] = ..., net_quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., avg_price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., realized_pnl: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., unrealized_pnl: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., currency: _Optional[str] = ..., venue: _Optional[str] = ..., opened_time_us: _Optional[int] = ..., updated_time_us: _Optional[int] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ...) -> None: ...

class ExecutionReport(_message.Message):
    __slots__ = ("sequence", "type", "order", "fill", "trading_state", "reason", "hops", "time_us", "position")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    TRADING_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: ReportType
    order: Order
    fill: Fill
    trading_state: TradingState
    reason: str
    hops: _containers.RepeatedCompositeFieldContainer[_types_pb2.HopStamp]
    time_us: int
    position: Position
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[ReportType, str]] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., fill: _Optional[_Union[Fill, _Mapping]] = ..., trading_state: _Optional[_Union[TradingState, str]] = ..., reason: _Optional[str] = ..., hops: _Optional[_Iterable[_Union[_types_pb2.HopStamp, _Mapping]]] = ..., time_us: _Optional[int] = ..., position: _Optional[_Union[Position, _Mapping]] = ...) -> None: ...

class SubmitOrderRequest(_message.Message):
    __slots__ = ("client_order_id", "symbol", "side", "type", "time_in_force", "quantity", "price", "trigger_price", "reduce_only", "strategy_id", "model_name", "model_version", "expire_time_us", "stop_distance", "stop_loss", "take_profit")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    REDUCE_ONLY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    STOP_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    quantity: _types_pb2.Decimal
    price: _types_pb2.Decimal
    trigger_price: _types_pb2.Decimal
    reduce_only: bool
    strategy_id: str
    model_name: str
    model_version: str
    expire_time_us: int
    stop_distance: _types_pb2.Decimal
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    def __init__(self, client_order_id: _Optional[str] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[OrderSide, str]] = ..., type: _Optional[_Union[OrderType, str]] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., trigger_price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., reduce_only: _Optional[bool] = ..., strategy_id: _Optional[str] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., expire_time_us: _Optional[int] = ..., stop_distance: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ...) -> None: ...

class SubmitOrderResponse(_message.Message):
    __slots__ = ("order", "duplicate")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    order: Order
    duplicate: bool
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("client_order_id",)
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    def __init__(self, client_order_id: _Optional[str] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class CancelAllRequest(_message.Message):
    __slots__ = ("symbol",)
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    def __init__(self, symbol: _Optional[str] = ...) -> None: ...

class CancelAllResponse(_message.Message):
    __slots__ = ("client_order_ids",)
    CLIENT_ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    client_order_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, client_order_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("client_order_id",)
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    def __init__(self, client_order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("symbol", "statuses", "open_only", "page_size", "page_token")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    statuses: _containers.RepeatedScalarFieldContainer[OrderStatus]
    open_only: bool
    page_size: int
    page_token: str
    def __init__(self, symbol: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[OrderStatus, str]]] = ..., open_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListPositionsRequest(_message.Message):
    __slots__ = ("symbol", "include_flat")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FLAT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    include_flat: bool
    def __init__(self, symbol: _Optional[str] = ..., include_flat: _Optional[bool] = ...) -> None: ...

class ListPositionsResponse(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ...) -> None: ...

class StreamExecutionReportsRequest(_message.Message):
    __slots__ = ("after_sequence", "symbols")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    symbols: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, after_sequence: _Optional[int] = ..., symbols: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamExecutionReportsResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: ExecutionReport
    def __init__(self, report: _Optional[_Union[ExecutionReport, _Mapping]] = ...) -> None: ...

class SetTradingStateRequest(_message.Message):
    __slots__ = ("state", "reason", "cancel_all", "flatten")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ALL_FIELD_NUMBER: _ClassVar[int]
    FLATTEN_FIELD_NUMBER: _ClassVar[int]
    state: TradingState
    reason: str
    cancel_all: bool
    flatten: bool
    def __init__(self, state: _Optional[_Union[TradingState, str]] = ..., reason: _Optional[str] = ..., cancel_all: _Optional[bool] = ..., flatten: _Optional[bool] = ...) -> None: ...

class SetTradingStateResponse(_message.Message):
    __slots__ = ("previous", "current", "canceled_client_order_ids", "flatten_client_order_ids")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    CANCELED_CLIENT_ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    FLATTEN_CLIENT_ORDER_IDS_FIELD_NUMBER: _ClassVar[int]
    previous: TradingState
    current: TradingState
    canceled_client_order_ids: _containers.RepeatedScalarFieldContainer[str]
    flatten_client_order_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, previous: _Optional[_Union[TradingState, str]] = ..., current: _Optional[_Union[TradingState, str]] = ..., canceled_client_order_ids: _Optional[_Iterable[str]] = ..., flatten_client_order_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ModifyOrderRequest(_message.Message):
    __slots__ = ("client_order_id", "quantity", "price", "trigger_price", "stop_loss", "take_profit")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PRICE_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    quantity: _types_pb2.Decimal
    price: _types_pb2.Decimal
    trigger_price: _types_pb2.Decimal
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    def __init__(self, client_order_id: _Optional[str] = ..., quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., trigger_price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ...) -> None: ...

class ModifyOrderResponse(_message.Message):
    __slots__ = ("order", "denial")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DENIAL_FIELD_NUMBER: _ClassVar[int]
    order: Order
    denial: RiskDenial
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., denial: _Optional[_Union[RiskDenial, _Mapping]] = ...) -> None: ...

class ModifyPositionRequest(_message.Message):
    __slots__ = ("symbol", "stop_loss", "take_profit")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    def __init__(self, symbol: _Optional[str] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ...) -> None: ...

class ModifyPositionResponse(_message.Message):
    __slots__ = ("position", "denial")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DENIAL_FIELD_NUMBER: _ClassVar[int]
    position: Position
    denial: RiskDenial
    def __init__(self, position: _Optional[_Union[Position, _Mapping]] = ..., denial: _Optional[_Union[RiskDenial, _Mapping]] = ...) -> None: ...

class GetRiskLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("max_count", "window_ms")
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    max_count: int
    window_ms: int
    def __init__(self, max_count: _Optional[int] = ..., window_ms: _Optional[int] = ...) -> None: ...

class RiskLimits(_message.Message):
    __slots__ = ("allowed_symbols", "max_order_quantity", "max_order_notional", "max_position_quantity", "max_gross_exposure", "max_open_orders", "price_collar_bps", "max_quote_age_ms", "submit_rate", "message_rate", "duplicate_intent_window_ms", "max_daily_loss", "daily_loss_state", "max_drawdown", "drawdown_state", "min_free_margin", "denial_rate")
    ALLOWED_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_ORDER_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_ORDER_NOTIONAL_FIELD_NUMBER: _ClassVar[int]
    MAX_POSITION_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_GROSS_EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    PRICE_COLLAR_BPS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUOTE_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_RATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_RATE_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_INTENT_WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DAILY_LOSS_FIELD_NUMBER: _ClassVar[int]
    DAILY_LOSS_STATE_FIELD_NUMBER: _ClassVar[int]
    MAX_DRAWDOWN_FIELD_NUMBER: _ClassVar[int]
    DRAWDOWN_STATE_FIELD_NUMBER: _ClassVar[int]
    MIN_FREE_MARGIN_FIELD_NUMBER: _ClassVar[int]
    DENIAL_RATE_FIELD_NUMBER: _ClassVar[int]
    allowed_symbols: _containers.RepeatedScalarFieldContainer[str]
    max_order_quantity: _types_pb2.Decimal
    max_order_notional: _types_pb2.Decimal
    max_position_quantity: _types_pb2.Decimal
    max_gross_exposure: _types_pb2.Decimal
    max_open_orders: int
    price_collar_bps: int
    max_quote_age_ms: int
    submit_rate: RateLimit
    message_rate: RateLimit
    duplicate_intent_window_ms: int
    max_daily_loss: _types_pb2.Decimal
    daily_loss_state: TradingState
    max_drawdown: _types_pb2.Decimal
    drawdown_state: TradingState
    min_free_margin: _types_pb2.Decimal
    denial_rate: RateLimit
    def __init__(self, allowed_symbols: _Optional[_Iterable[str]] = ..., max_order_quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., max_order_notional: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., max_position_quantity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., max_gross_exposure: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., max_open_orders: _Optional[int] = ..., price_collar_bps: _Optional[int] = ..., max_quote_age_ms: _Optional[int] = ..., submit_rate: _Optional[_Union[RateLimit, _Mapping]] = ..., message_rate: _Optional[_Union[RateLimit, _Mapping]] = ..., duplicate_intent_window_ms: _Optional[int] = ..., max_daily_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., daily_loss_state: _Optional[_Union[TradingState, str]] = ..., max_drawdown: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., drawdown_state: _Optional[_Union[TradingState, str]] = ..., min_free_margin: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., denial_rate: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class GetRiskLimitsResponse(_message.Message):
    __slots__ = ("limits", "trading_state")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    TRADING_STATE_FIELD_NUMBER: _ClassVar[int]
    limits: RiskLimits
    trading_state: TradingState
    def __init__(self, limits: _Optional[_Union[RiskLimits, _Mapping]] = ..., trading_state: _Optional[_Union[TradingState, str]] = ...) -> None: ...
