from kairos.marketdata.v1 import marketdata_pb2 as _marketdata_pb2
from kairos.types.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_MARKET_DATA: _ClassVar[Channel]
    CHANNEL_TRADING: _ClassVar[Channel]

class TradeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRADE_MODE_UNSPECIFIED: _ClassVar[TradeMode]
    TRADE_MODE_DEMO: _ClassVar[TradeMode]
    TRADE_MODE_CONTEST: _ClassVar[TradeMode]
    TRADE_MODE_REAL: _ClassVar[TradeMode]

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_UNSPECIFIED: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_STOP: _ClassVar[OrderType]
    ORDER_TYPE_STOP_LIMIT: _ClassVar[OrderType]

class CommandKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_KIND_UNSPECIFIED: _ClassVar[CommandKind]
    COMMAND_KIND_PLACE: _ClassVar[CommandKind]
    COMMAND_KIND_CANCEL: _ClassVar[CommandKind]
    COMMAND_KIND_MODIFY: _ClassVar[CommandKind]
    COMMAND_KIND_CLOSE_POSITION: _ClassVar[CommandKind]
    COMMAND_KIND_QUERY_ORDER: _ClassVar[CommandKind]
    COMMAND_KIND_SNAPSHOT: _ClassVar[CommandKind]
    COMMAND_KIND_MODIFY_POSITION: _ClassVar[CommandKind]

class BridgeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BRIDGE_STATUS_UNSPECIFIED: _ClassVar[BridgeStatus]
    BRIDGE_STATUS_SENT: _ClassVar[BridgeStatus]
    BRIDGE_STATUS_INVALID: _ClassVar[BridgeStatus]
    BRIDGE_STATUS_EXPIRED: _ClassVar[BridgeStatus]
    BRIDGE_STATUS_TRADING_DISABLED: _ClassVar[BridgeStatus]
    BRIDGE_STATUS_DUPLICATE: _ClassVar[BridgeStatus]
    BRIDGE_STATUS_QUERY_RESULT: _ClassVar[BridgeStatus]

class TransactionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSACTION_TYPE_UNSPECIFIED: _ClassVar[TransactionType]
    TRANSACTION_TYPE_ORDER_ADD: _ClassVar[TransactionType]
    TRANSACTION_TYPE_ORDER_UPDATE: _ClassVar[TransactionType]
    TRANSACTION_TYPE_ORDER_DELETE: _ClassVar[TransactionType]
    TRANSACTION_TYPE_DEAL_ADD: _ClassVar[TransactionType]
    TRANSACTION_TYPE_DEAL_UPDATE: _ClassVar[TransactionType]
    TRANSACTION_TYPE_DEAL_DELETE: _ClassVar[TransactionType]
    TRANSACTION_TYPE_HISTORY_ADD: _ClassVar[TransactionType]
    TRANSACTION_TYPE_HISTORY_UPDATE: _ClassVar[TransactionType]
    TRANSACTION_TYPE_HISTORY_DELETE: _ClassVar[TransactionType]
    TRANSACTION_TYPE_POSITION: _ClassVar[TransactionType]
    TRANSACTION_TYPE_REQUEST: _ClassVar[TransactionType]

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_MALFORMED_FRAME: _ClassVar[ErrorCode]
    ERROR_CODE_UNSUPPORTED_VERSION: _ClassVar[ErrorCode]
    ERROR_CODE_PROTOCOL_VIOLATION: _ClassVar[ErrorCode]
    ERROR_CODE_REJECTED: _ClassVar[ErrorCode]
    ERROR_CODE_SHUTTING_DOWN: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_MARKET_DATA: Channel
CHANNEL_TRADING: Channel
TRADE_MODE_UNSPECIFIED: TradeMode
TRADE_MODE_DEMO: TradeMode
TRADE_MODE_CONTEST: TradeMode
TRADE_MODE_REAL: TradeMode
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_UNSPECIFIED: OrderType
ORDER_TYPE_MARKET: OrderType
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_STOP: OrderType
ORDER_TYPE_STOP_LIMIT: OrderType
COMMAND_KIND_UNSPECIFIED: CommandKind
COMMAND_KIND_PLACE: CommandKind
COMMAND_KIND_CANCEL: CommandKind
COMMAND_KIND_MODIFY: CommandKind
COMMAND_KIND_CLOSE_POSITION: CommandKind
COMMAND_KIND_QUERY_ORDER: CommandKind
COMMAND_KIND_SNAPSHOT: CommandKind
COMMAND_KIND_MODIFY_POSITION: CommandKind
BRIDGE_STATUS_UNSPECIFIED: BridgeStatus
BRIDGE_STATUS_SENT: BridgeStatus
BRIDGE_STATUS_INVALID: BridgeStatus
BRIDGE_STATUS_EXPIRED: BridgeStatus
BRIDGE_STATUS_TRADING_DISABLED: BridgeStatus
BRIDGE_STATUS_DUPLICATE: BridgeStatus
BRIDGE_STATUS_QUERY_RESULT: BridgeStatus
TRANSACTION_TYPE_UNSPECIFIED: TransactionType
TRANSACTION_TYPE_ORDER_ADD: TransactionType
TRANSACTION_TYPE_ORDER_UPDATE: TransactionType
TRANSACTION_TYPE_ORDER_DELETE: TransactionType
TRANSACTION_TYPE_DEAL_ADD: TransactionType
TRANSACTION_TYPE_DEAL_UPDATE: TransactionType
TRANSACTION_TYPE_DEAL_DELETE: TransactionType
TRANSACTION_TYPE_HISTORY_ADD: TransactionType
TRANSACTION_TYPE_HISTORY_UPDATE: TransactionType
TRANSACTION_TYPE_HISTORY_DELETE: TransactionType
TRANSACTION_TYPE_POSITION: TransactionType
TRANSACTION_TYPE_REQUEST: TransactionType
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_MALFORMED_FRAME: ErrorCode
ERROR_CODE_UNSUPPORTED_VERSION: ErrorCode
ERROR_CODE_PROTOCOL_VIOLATION: ErrorCode
ERROR_CODE_REJECTED: ErrorCode
ERROR_CODE_SHUTTING_DOWN: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode

class Frame(_message.Message):
    __slots__ = ("sequence", "ack", "sent_time_us", "hello", "welcome", "heartbeat", "symbol_info", "ticks", "order_command", "order_result", "trade_transaction", "account", "positions", "error", "challenge", "terminal_check", "history_request", "history_data", "tester_step", "tester_decision")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_US_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_INFO_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    ORDER_COMMAND_FIELD_NUMBER: _ClassVar[int]
    ORDER_RESULT_FIELD_NUMBER: _ClassVar[int]
    TRADE_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_CHECK_FIELD_NUMBER: _ClassVar[int]
    HISTORY_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HISTORY_DATA_FIELD_NUMBER: _ClassVar[int]
    TESTER_STEP_FIELD_NUMBER: _ClassVar[int]
    TESTER_DECISION_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    ack: int
    sent_time_us: int
    hello: Hello
    welcome: Welcome
    heartbeat: Heartbeat
    symbol_info: _marketdata_pb2.SymbolInfo
    ticks: _marketdata_pb2.TickBatch
    order_command: OrderCommand
    order_result: OrderResult
    trade_transaction: TradeTransaction
    account: AccountSnapshot
    positions: PositionSnapshot
    error: Error
    challenge: Challenge
    terminal_check: TerminalCheck
    history_request: HistoryRequest
    history_data: HistoryData
    tester_step: TesterStep
    tester_decision: TesterDecision
    def __init__(self, sequence: _Optional[int] = ..., ack: _Optional[int] = ..., sent_time_us: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., symbol_info: _Optional[_Union[_marketdata_pb2.SymbolInfo, _Mapping]] = ..., ticks: _Optional[_Union[_marketdata_pb2.TickBatch, _Mapping]] = ..., order_command: _Optional[_Union[OrderCommand, _Mapping]] = ..., order_result: _Optional[_Union[OrderResult, _Mapping]] = ..., trade_transaction: _Optional[_Union[TradeTransaction, _Mapping]] = ..., account: _Optional[_Union[AccountSnapshot, _Mapping]] = ..., positions: _Optional[_Union[PositionSnapshot, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., challenge: _Optional[_Union[Challenge, _Mapping]] = ..., terminal_check: _Optional[_Union[TerminalCheck, _Mapping]] = ..., history_request: _Optional[_Union[HistoryRequest, _Mapping]] = ..., history_data: _Optional[_Union[HistoryData, _Mapping]] = ..., tester_step: _Optional[_Union[TesterStep, _Mapping]] = ..., tester_decision: _Optional[_Union[TesterDecision, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("api_version", "bridge_version", "channel", "session_id", "terminal_name", "terminal_build", "company", "server", "account_login", "account_currency", "trade_mode", "ea_symbol", "magic", "client_nonce", "auth_proof", "lockstep")
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_NAME_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_BUILD_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_LOGIN_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TRADE_MODE_FIELD_NUMBER: _ClassVar[int]
    EA_SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MAGIC_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NONCE_FIELD_NUMBER: _ClassVar[int]
    AUTH_PROOF_FIELD_NUMBER: _ClassVar[int]
    LOCKSTEP_FIELD_NUMBER: _ClassVar[int]
    api_version: int
    bridge_version: str
    channel: Channel
    session_id: int
    terminal_name: str
    terminal_build: int
    company: str
    server: str
    account_login: int
    account_currency: str
    trade_mode: TradeMode
    ea_symbol: str
    magic: int
    client_nonce: bytes
    auth_proof: bytes
    lockstep: bool
    def __init__(self, api_version: _Optional[int] = ..., bridge_version: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., session_id: _Optional[int] = ..., terminal_name: _Optional[str] = ..., terminal_build: _Optional[int] = ..., company: _Optional[str] = ..., server: _Optional[str] = ..., account_login: _Optional[int] = ..., account_currency: _Optional[str] = ..., trade_mode: _Optional[_Union[TradeMode, str]] = ..., ea_symbol: _Optional[str] = ..., magic: _Optional[int] = ..., client_nonce: _Optional[bytes] = ..., auth_proof: _Optional[bytes] = ..., lockstep: _Optional[bool] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("server_nonce", "auth_required")
    SERVER_NONCE_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    server_nonce: bytes
    auth_required: bool
    def __init__(self, server_nonce: _Optional[bytes] = ..., auth_required: _Optional[bool] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("server_version", "resume_after", "heartbeat_interval_ms", "server_proof")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SERVER_PROOF_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    resume_after: int
    heartbeat_interval_ms: int
    server_proof: bytes
    def __init__(self, server_version: _Optional[str] = ..., resume_after: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ..., server_proof: _Optional[bytes] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time_us", "echo_time_us")
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    ECHO_TIME_US_FIELD_NUMBER: _ClassVar[int]
    time_us: int
    echo_time_us: int
    def __init__(self, time_us: _Optional[int] = ..., echo_time_us: _Optional[int] = ...) -> None: ...

class OrderCommand(_message.Message):
    __slots__ = ("command_id", "client_order_id", "kind", "symbol", "side", "order_type", "volume", "price", "stop_limit_price", "stop_loss", "take_profit", "deviation_points", "order_ticket", "position_ticket", "expiration_msc", "deadline_time_us")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STOP_LIMIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    DEVIATION_POINTS_FIELD_NUMBER: _ClassVar[int]
    ORDER_TICKET_FIELD_NUMBER: _ClassVar[int]
    POSITION_TICKET_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_MSC_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    command_id: int
    client_order_id: str
    kind: CommandKind
    symbol: str
    side: Side
    order_type: OrderType
    volume: _types_pb2.Decimal
    price: _types_pb2.Decimal
    stop_limit_price: _types_pb2.Decimal
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    deviation_points: int
    order_ticket: int
    position_ticket: int
    expiration_msc: int
    deadline_time_us: int
    def __init__(self, command_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., kind: _Optional[_Union[CommandKind, str]] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., volume: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., stop_limit_price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., deviation_points: _Optional[int] = ..., order_ticket: _Optional[int] = ..., position_ticket: _Optional[int] = ..., expiration_msc: _Optional[int] = ..., deadline_time_us: _Optional[int] = ...) -> None: ...

class OrderResult(_message.Message):
    __slots__ = ("command_id", "client_order_id", "status", "retcode", "comment", "order_ticket", "deal_ticket", "volume", "price", "bid", "ask", "request_id", "received_time_us", "completed_time_us")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RETCODE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    ORDER_TICKET_FIELD_NUMBER: _ClassVar[int]
    DEAL_TICKET_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    command_id: int
    client_order_id: str
    status: BridgeStatus
    retcode: int
    comment: str
    order_ticket: int
    deal_ticket: int
    volume: _types_pb2.Decimal
    price: _types_pb2.Decimal
    bid: _types_pb2.Decimal
    ask: _types_pb2.Decimal
    request_id: int
    received_time_us: int
    completed_time_us: int
    def __init__(self, command_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., status: _Optional[_Union[BridgeStatus, str]] = ..., retcode: _Optional[int] = ..., comment: _Optional[str] = ..., order_ticket: _Optional[int] = ..., deal_ticket: _Optional[int] = ..., volume: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., bid: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., ask: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., request_id: _Optional[int] = ..., received_time_us: _Optional[int] = ..., completed_time_us: _Optional[int] = ...) -> None: ...

class TradeTransaction(_message.Message):
    __slots__ = ("type", "client_order_id", "order_ticket", "deal_ticket", "position_ticket", "symbol", "side", "mt5_order_type", "mt5_order_state", "mt5_deal_type", "price", "volume", "stop_loss", "take_profit", "commission", "time_msc")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_TICKET_FIELD_NUMBER: _ClassVar[int]
    DEAL_TICKET_FIELD_NUMBER: _ClassVar[int]
    POSITION_TICKET_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    MT5_ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    MT5_ORDER_STATE_FIELD_NUMBER: _ClassVar[int]
    MT5_DEAL_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    type: TransactionType
    client_order_id: str
    order_ticket: int
    deal_ticket: int
    position_ticket: int
    symbol: str
    side: Side
    mt5_order_type: int
    mt5_order_state: int
    mt5_deal_type: int
    price: _types_pb2.Decimal
    volume: _types_pb2.Decimal
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    commission: _types_pb2.Decimal
    time_msc: int
    def __init__(self, type: _Optional[_Union[TransactionType, str]] = ..., client_order_id: _Optional[str] = ..., order_ticket: _Optional[int] = ..., deal_ticket: _Optional[int] = ..., position_ticket: _Optional[int] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., mt5_order_type: _Optional[int] = ..., mt5_order_state: _Optional[int] = ..., mt5_deal_type: _Optional[int] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., volume: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., commission: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., time_msc: _Optional[int] = ...) -> None: ...

class AccountSnapshot(_message.Message):
    __slots__ = ("login", "currency", "balance", "equity", "margin", "margin_free", "margin_level", "leverage", "trade_allowed", "time_msc")
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FREE_FIELD_NUMBER: _ClassVar[int]
    MARGIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    LEVERAGE_FIELD_NUMBER: _ClassVar[int]
    TRADE_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    login: int
    currency: str
    balance: _types_pb2.Decimal
    equity: _types_pb2.Decimal
    margin: _types_pb2.Decimal
    margin_free: _types_pb2.Decimal
    margin_level: _types_pb2.Decimal
    leverage: int
    trade_allowed: bool
    time_msc: int
    def __init__(self, login: _Optional[int] = ..., currency: _Optional[str] = ..., balance: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., equity: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., margin: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., margin_free: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., margin_level: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., leverage: _Optional[int] = ..., trade_allowed: _Optional[bool] = ..., time_msc: _Optional[int] = ...) -> None: ...

class Position(_message.Message):
    __slots__ = ("ticket", "symbol", "side", "volume", "price_open", "stop_loss", "take_profit", "profit", "swap", "magic", "time_msc", "client_order_id")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PRICE_OPEN_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    PROFIT_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    MAGIC_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    ticket: int
    symbol: str
    side: Side
    volume: _types_pb2.Decimal
    price_open: _types_pb2.Decimal
    stop_loss: _types_pb2.Decimal
    take_profit: _types_pb2.Decimal
    profit: _types_pb2.Decimal
    swap: _types_pb2.Decimal
    magic: int
    time_msc: int
    client_order_id: str
    def __init__(self, ticket: _Optional[int] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., volume: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price_open: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., stop_loss: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., take_profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., profit: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., swap: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., magic: _Optional[int] = ..., time_msc: _Optional[int] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class WorkingOrder(_message.Message):
    __slots__ = ("ticket", "symbol", "side", "order_type", "volume", "price", "client_order_id", "time_msc")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    ticket: int
    symbol: str
    side: Side
    order_type: OrderType
    volume: _types_pb2.Decimal
    price: _types_pb2.Decimal
    client_order_id: str
    time_msc: int
    def __init__(self, ticket: _Optional[int] = ..., symbol: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., volume: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., price: _Optional[_Union[_types_pb2.Decimal, _Mapping]] = ..., client_order_id: _Optional[str] = ..., time_msc: _Optional[int] = ...) -> None: ...

class PositionSnapshot(_message.Message):
    __slots__ = ("positions", "orders", "time_msc", "complete")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Position]
    orders: _containers.RepeatedCompositeFieldContainer[WorkingOrder]
    time_msc: int
    complete: bool
    def __init__(self, positions: _Optional[_Iterable[_Union[Position, _Mapping]]] = ..., orders: _Optional[_Iterable[_Union[WorkingOrder, _Mapping]]] = ..., time_msc: _Optional[int] = ..., complete: _Optional[bool] = ...) -> None: ...

class TerminalCheck(_message.Message):
    __slots__ = ("dlls_allowed", "terminal_trade_allowed", "ea_trade_allowed", "account_trade_allowed", "account_expert_allowed", "symbols_checked", "symbols_failed", "problems", "tester", "time_msc")
    DLLS_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_TRADE_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    EA_TRADE_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_TRADE_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_EXPERT_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FAILED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    TESTER_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    dlls_allowed: bool
    terminal_trade_allowed: bool
    ea_trade_allowed: bool
    account_trade_allowed: bool
    account_expert_allowed: bool
    symbols_checked: int
    symbols_failed: int
    problems: str
    tester: bool
    time_msc: int
    def __init__(self, dlls_allowed: _Optional[bool] = ..., terminal_trade_allowed: _Optional[bool] = ..., ea_trade_allowed: _Optional[bool] = ..., account_trade_allowed: _Optional[bool] = ..., account_expert_allowed: _Optional[bool] = ..., symbols_checked: _Optional[int] = ..., symbols_failed: _Optional[int] = ..., problems: _Optional[str] = ..., tester: _Optional[bool] = ..., time_msc: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("request_id", "symbol", "kind", "period_s", "from_msc", "to_msc")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    FROM_MSC_FIELD_NUMBER: _ClassVar[int]
    TO_MSC_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    symbol: str
    kind: _marketdata_pb2.HistoryKind
    period_s: int
    from_msc: int
    to_msc: int
    def __init__(self, request_id: _Optional[int] = ..., symbol: _Optional[str] = ..., kind: _Optional[_Union[_marketdata_pb2.HistoryKind, str]] = ..., period_s: _Optional[int] = ..., from_msc: _Optional[int] = ..., to_msc: _Optional[int] = ...) -> None: ...

class HistoryData(_message.Message):
    __slots__ = ("request_id", "part", "status", "ticks", "bars", "total", "message", "first_available_msc")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIRST_AVAILABLE_MSC_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    part: int
    status: _marketdata_pb2.HistoryStatus
    ticks: _marketdata_pb2.TickBatch
    bars: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.Bar]
    total: int
    message: str
    first_available_msc: int
    def __init__(self, request_id: _Optional[int] = ..., part: _Optional[int] = ..., status: _Optional[_Union[_marketdata_pb2.HistoryStatus, str]] = ..., ticks: _Optional[_Union[_marketdata_pb2.TickBatch, _Mapping]] = ..., bars: _Optional[_Iterable[_Union[_marketdata_pb2.Bar, _Mapping]]] = ..., total: _Optional[int] = ..., message: _Optional[str] = ..., first_available_msc: _Optional[int] = ...) -> None: ...

class TesterStep(_message.Message):
    __slots__ = ("symbol", "tick_sequence", "decision_time_msc")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TICK_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    tick_sequence: int
    decision_time_msc: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, symbol: _Optional[str] = ..., tick_sequence: _Optional[int] = ..., decision_time_msc: _Optional[_Iterable[int]] = ...) -> None: ...

class TesterDecision(_message.Message):
    __slots__ = ("symbol", "time_msc", "outcome", "commands")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    time_msc: int
    outcome: str
    commands: int
    def __init__(self, symbol: _Optional[str] = ..., time_msc: _Optional[int] = ..., outcome: _Optional[str] = ..., commands: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "frame_sequence")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRAME_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    frame_sequence: int
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., frame_sequence: _Optional[int] = ...) -> None: ...
