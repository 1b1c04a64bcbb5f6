from kairos.marketdata.v1 import marketdata_pb2 as _marketdata_pb2
from kairos.types.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_SERVING: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_DOWN: _ClassVar[Direction]
    DIRECTION_FLAT: _ClassVar[Direction]
    DIRECTION_UP: _ClassVar[Direction]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_SERVING: ModelState
MODEL_STATE_FAILED: ModelState
DIRECTION_UNSPECIFIED: Direction
DIRECTION_DOWN: Direction
DIRECTION_FLAT: Direction
DIRECTION_UP: Direction

class StreamPredictRequest(_message.Message):
    __slots__ = ("request_id", "ticks", "bars", "hops", "warmup")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TICKS_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    ticks: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.TickBatch]
    bars: _containers.RepeatedCompositeFieldContainer[_marketdata_pb2.Bar]
    hops: _containers.RepeatedCompositeFieldContainer[_types_pb2.HopStamp]
    warmup: bool
    def __init__(self, request_id: _Optional[int] = ..., ticks: _Optional[_Iterable[_Union[_marketdata_pb2.TickBatch, _Mapping]]] = ..., bars: _Optional[_Iterable[_Union[_marketdata_pb2.Bar, _Mapping]]] = ..., hops: _Optional[_Iterable[_Union[_types_pb2.HopStamp, _Mapping]]] = ..., warmup: _Optional[bool] = ...) -> None: ...

class StreamPredictResponse(_message.Message):
    __slots__ = ("request_id", "predictions", "rejections")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    rejections: _containers.RepeatedCompositeFieldContainer[InputRejection]
    def __init__(self, request_id: _Optional[int] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., rejections: _Optional[_Iterable[_Union[InputRejection, _Mapping]]] = ...) -> None: ...

class InputRejection(_message.Message):
    __slots__ = ("field", "reason", "description", "symbol")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    description: str
    symbol: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., symbol: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("symbol", "time_msc", "model_name", "model_version", "outputs", "request_id", "hops")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    time_msc: int
    model_name: str
    model_version: str
    outputs: _containers.RepeatedScalarFieldContainer[float]
    request_id: int
    hops: _containers.RepeatedCompositeFieldContainer[_types_pb2.HopStamp]
    def __init__(self, symbol: _Optional[str] = ..., time_msc: _Optional[int] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., outputs: _Optional[_Iterable[float]] = ..., request_id: _Optional[int] = ..., hops: _Optional[_Iterable[_Union[_types_pb2.HopStamp, _Mapping]]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("symbol", "model_name", "features", "bars")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    model_name: str
    features: FeatureVector
    bars: _marketdata_pb2.BarBatch
    def __init__(self, symbol: _Optional[str] = ..., model_name: _Optional[str] = ..., features: _Optional[_Union[FeatureVector, _Mapping]] = ..., bars: _Optional[_Union[_marketdata_pb2.BarBatch, _Mapping]] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("prediction",)
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    prediction: Prediction
    def __init__(self, prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class GetModelStatusRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class GetModelStatusResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("model_name", "model_version", "source_uri", "state", "feature_schema_hash", "feature_names", "output_names", "window", "loaded_time_us", "last_error", "predictions_total", "validation", "role", "shadow", "promotion", "drift", "created_time_us", "expired", "timeframe_s")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SCHEMA_HASH_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAMES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LOADED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_S_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    source_uri: str
    state: ModelState
    feature_schema_hash: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    output_names: _containers.RepeatedScalarFieldContainer[str]
    window: int
    loaded_time_us: int
    last_error: str
    predictions_total: int
    validation: ModelValidation
    role: str
    shadow: ShadowFigures
    promotion: PromotionTest
    drift: DriftStatus
    created_time_us: int
    expired: bool
    timeframe_s: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., source_uri: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., feature_schema_hash: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., output_names: _Optional[_Iterable[str]] = ..., window: _Optional[int] = ..., loaded_time_us: _Optional[int] = ..., last_error: _Optional[str] = ..., predictions_total: _Optional[int] = ..., validation: _Optional[_Union[ModelValidation, _Mapping]] = ..., role: _Optional[str] = ..., shadow: _Optional[_Union[ShadowFigures, _Mapping]] = ..., promotion: _Optional[_Union[PromotionTest, _Mapping]] = ..., drift: _Optional[_Union[DriftStatus, _Mapping]] = ..., created_time_us: _Optional[int] = ..., expired: _Optional[bool] = ..., timeframe_s: _Optional[int] = ...) -> None: ...

class ShadowFigures(_message.Message):
    __slots__ = ("bars", "net_return", "sharpe", "turnover", "trades")
    BARS_FIELD_NUMBER: _ClassVar[int]
    NET_RETURN_FIELD_NUMBER: _ClassVar[int]
    SHARPE_FIELD_NUMBER: _ClassVar[int]
    TURNOVER_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    bars: int
    net_return: float
    sharpe: float
    turnover: float
    trades: int
    def __init__(self, bars: _Optional[int] = ..., net_return: _Optional[float] = ..., sharpe: _Optional[float] = ..., turnover: _Optional[float] = ..., trades: _Optional[int] = ...) -> None: ...

class PromotionTest(_message.Message):
    __slots__ = ("bars", "mean_difference", "statistic", "p_value", "method", "significant")
    BARS_FIELD_NUMBER: _ClassVar[int]
    MEAN_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    bars: int
    mean_difference: float
    statistic: float
    p_value: float
    method: str
    significant: bool
    def __init__(self, bars: _Optional[int] = ..., mean_difference: _Optional[float] = ..., statistic: _Optional[float] = ..., p_value: _Optional[float] = ..., method: _Optional[str] = ..., significant: _Optional[bool] = ...) -> None: ...

class DriftStatus(_message.Message):
    __slots__ = ("dissimilarity_last", "dissimilarity_threshold", "out_of_distribution_total", "abstained_total", "psi_max", "psi_max_feature")
    DISSIMILARITY_LAST_FIELD_NUMBER: _ClassVar[int]
    DISSIMILARITY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DISTRIBUTION_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ABSTAINED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PSI_MAX_FIELD_NUMBER: _ClassVar[int]
    PSI_MAX_FEATURE_FIELD_NUMBER: _ClassVar[int]
    dissimilarity_last: float
    dissimilarity_threshold: float
    out_of_distribution_total: int
    abstained_total: int
    psi_max: float
    psi_max_feature: str
    def __init__(self, dissimilarity_last: _Optional[float] = ..., dissimilarity_threshold: _Optional[float] = ..., out_of_distribution_total: _Optional[int] = ..., abstained_total: _Optional[int] = ..., psi_max: _Optional[float] = ..., psi_max_feature: _Optional[str] = ...) -> None: ...

class ModelValidation(_message.Message):
    __slots__ = ("gate_passed", "verdict", "sharpe", "sharpe_ci_low", "sharpe_ci_high", "sharpe_ci_level", "deflated_sharpe", "n_trials", "net_return")
    GATE_PASSED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SHARPE_FIELD_NUMBER: _ClassVar[int]
    SHARPE_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    SHARPE_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    SHARPE_CI_LEVEL_FIELD_NUMBER: _ClassVar[int]
    DEFLATED_SHARPE_FIELD_NUMBER: _ClassVar[int]
    N_TRIALS_FIELD_NUMBER: _ClassVar[int]
    NET_RETURN_FIELD_NUMBER: _ClassVar[int]
    gate_passed: bool
    verdict: str
    sharpe: float
    sharpe_ci_low: float
    sharpe_ci_high: float
    sharpe_ci_level: float
    deflated_sharpe: float
    n_trials: int
    net_return: float
    def __init__(self, gate_passed: _Optional[bool] = ..., verdict: _Optional[str] = ..., sharpe: _Optional[float] = ..., sharpe_ci_low: _Optional[float] = ..., sharpe_ci_high: _Optional[float] = ..., sharpe_ci_level: _Optional[float] = ..., deflated_sharpe: _Optional[float] = ..., n_trials: _Optional[int] = ..., net_return: _Optional[float] = ...) -> None: ...

class Signal(_message.Message):
    __slots__ = ("symbol", "time_msc", "direction", "strength", "model_name", "model_version", "outputs", "hops", "bid", "ask", "realised_vol", "policy")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIME_MSC_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    REALISED_VOL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    time_msc: int
    direction: Direction
    strength: float
    model_name: str
    model_version: str
    outputs: _containers.RepeatedScalarFieldContainer[float]
    hops: _containers.RepeatedCompositeFieldContainer[_types_pb2.HopStamp]
    bid: float
    ask: float
    realised_vol: float
    policy: DecisionPolicy
    def __init__(self, symbol: _Optional[str] = ..., time_msc: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ..., strength: _Optional[float] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., outputs: _Optional[_Iterable[float]] = ..., hops: _Optional[_Iterable[_Union[_types_pb2.HopStamp, _Mapping]]] = ..., bid: _Optional[float] = ..., ask: _Optional[float] = ..., realised_vol: _Optional[float] = ..., policy: _Optional[_Union[DecisionPolicy, _Mapping]] = ...) -> None: ...

class DecisionPolicy(_message.Message):
    __slots__ = ("entry_edge", "exit_edge", "move_up", "move_down", "min_hold_bars", "max_hold_bars", "cooldown_bars", "max_lots", "target_vol", "stop_vol_mult")
    ENTRY_EDGE_FIELD_NUMBER: _ClassVar[int]
    EXIT_EDGE_FIELD_NUMBER: _ClassVar[int]
    MOVE_UP_FIELD_NUMBER: _ClassVar[int]
    MOVE_DOWN_FIELD_NUMBER: _ClassVar[int]
    MIN_HOLD_BARS_FIELD_NUMBER: _ClassVar[int]
    MAX_HOLD_BARS_FIELD_NUMBER: _ClassVar[int]
    COOLDOWN_BARS_FIELD_NUMBER: _ClassVar[int]
    MAX_LOTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_VOL_FIELD_NUMBER: _ClassVar[int]
    STOP_VOL_MULT_FIELD_NUMBER: _ClassVar[int]
    entry_edge: float
    exit_edge: float
    move_up: float
    move_down: float
    min_hold_bars: int
    max_hold_bars: int
    cooldown_bars: int
    max_lots: float
    target_vol: float
    stop_vol_mult: float
    def __init__(self, entry_edge: _Optional[float] = ..., exit_edge: _Optional[float] = ..., move_up: _Optional[float] = ..., move_down: _Optional[float] = ..., min_hold_bars: _Optional[int] = ..., max_hold_bars: _Optional[int] = ..., cooldown_bars: _Optional[int] = ..., max_lots: _Optional[float] = ..., target_vol: _Optional[float] = ..., stop_vol_mult: _Optional[float] = ...) -> None: ...
