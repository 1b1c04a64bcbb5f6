from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HopStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOP_STAGE_UNSPECIFIED: _ClassVar[HopStage]
    HOP_STAGE_BRIDGE_PUSH: _ClassVar[HopStage]
    HOP_STAGE_BRIDGE_SEND: _ClassVar[HopStage]
    HOP_STAGE_COLLECTOR_RECEIVE: _ClassVar[HopStage]
    HOP_STAGE_COLLECTOR_SEND: _ClassVar[HopStage]
    HOP_STAGE_INFERENCE_RECEIVE: _ClassVar[HopStage]
    HOP_STAGE_INFERENCE_DONE: _ClassVar[HopStage]
    HOP_STAGE_INFERENCE_SEND: _ClassVar[HopStage]
    HOP_STAGE_EXECUTION_RECEIVE: _ClassVar[HopStage]
    HOP_STAGE_RISK_DONE: _ClassVar[HopStage]
    HOP_STAGE_VENUE_SEND: _ClassVar[HopStage]
    HOP_STAGE_VENUE_ACK: _ClassVar[HopStage]
HOP_STAGE_UNSPECIFIED: HopStage
HOP_STAGE_BRIDGE_PUSH: HopStage
HOP_STAGE_BRIDGE_SEND: HopStage
HOP_STAGE_COLLECTOR_RECEIVE: HopStage
HOP_STAGE_COLLECTOR_SEND: HopStage
HOP_STAGE_INFERENCE_RECEIVE: HopStage
HOP_STAGE_INFERENCE_DONE: HopStage
HOP_STAGE_INFERENCE_SEND: HopStage
HOP_STAGE_EXECUTION_RECEIVE: HopStage
HOP_STAGE_RISK_DONE: HopStage
HOP_STAGE_VENUE_SEND: HopStage
HOP_STAGE_VENUE_ACK: HopStage

class Decimal(_message.Message):
    __slots__ = ("units", "scale")
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    units: int
    scale: int
    def __init__(self, units: _Optional[int] = ..., scale: _Optional[int] = ...) -> None: ...

class HopStamp(_message.Message):
    __slots__ = ("stage", "time_us")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    stage: HopStage
    time_us: int
    def __init__(self, stage: _Optional[_Union[HopStage, str]] = ..., time_us: _Optional[int] = ...) -> None: ...
