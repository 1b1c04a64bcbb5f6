"""Cross-language golden vectors, Python side (protobuf stubs and the betterproto2 SDK).

Every vector in proto/testdata/golden must decode from its checked-in bytes, equal its text form,
and re-encode to the identical bytes, as it does in Go and in C (nanopb).
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from pathlib import Path

import betterproto2
import pytest
from google.protobuf import message_factory, proto, text_format
from google.protobuf.descriptor_pool import Default as default_pool
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

import kairos.bridge.v1.bridge_pb2
import kairos.marketdata.v1.marketdata_pb2
import kairos.sdk.bridge.v1

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "proto" / "testdata" / "golden"


@dataclass(frozen=True)
class Vector:
    name: str
    message: str  # full protobuf name, e.g. kairos.bridge.v1.Frame
    text: str
    wire: bytes


def load_vectors() -> list[Vector]:
    vectors = []
    for path in sorted(GOLDEN_DIR.glob("*.txtpb")):
        text = path.read_text(encoding="utf-8")
        header = [line for line in text.splitlines() if line.startswith("# proto-message:")]
        assert header, f"{path}:1: no '# proto-message:' header"
        vectors.append(
            Vector(
                path.stem, header[0].split(":", 1)[1].strip(), text, path.with_suffix(".binpb").read_bytes()
            )
        )
    return vectors


VECTORS = load_vectors()


def protobuf_class(full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(default_pool().FindMessageTypeByName(full_name))


def sdk_class(full_name: str) -> type[betterproto2.Message]:
    # kairos.bridge.v1.Frame -> kairos.sdk.bridge.v1.Frame
    package, _, name = full_name.rpartition(".")
    module = importlib.import_module("kairos.sdk." + package.removeprefix("kairos."))
    cls: type[betterproto2.Message] = getattr(module, name)
    return cls


def test_every_message_kind_has_a_vector() -> None:
    assert len(VECTORS) >= 19
    frame_bodies = set()
    for v in VECTORS:
        if v.message == "kairos.bridge.v1.Frame":
            frame = kairos.bridge.v1.bridge_pb2.Frame.FromString(v.wire)
            frame_bodies.add(frame.WhichOneof("body"))
    oneof = kairos.bridge.v1.bridge_pb2.Frame.DESCRIPTOR.oneofs_by_name["body"]
    assert frame_bodies == {f.name for f in oneof.fields}
    marketdata = {v.message for v in VECTORS if v.message.startswith("kairos.marketdata.")}
    assert marketdata == {
        f"kairos.marketdata.v1.{n}" for n in ("Tick", "TickBatch", "Bar", "BarBatch", "SymbolInfo")
    }


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_protobuf_reencodes_byte_identically(vector: Vector) -> None:
    msg = protobuf_class(vector.message).FromString(vector.wire)
    assert len(UnknownFieldSet(msg)) == 0
    assert msg.SerializeToString(deterministic=True) == vector.wire


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_text_form_encodes_to_the_checked_in_bytes(vector: Vector) -> None:
    msg = text_format.Parse(vector.text, protobuf_class(vector.message)())
    assert msg.SerializeToString(deterministic=True) == vector.wire, (
        "run `make golden` after editing a .txtpb"
    )


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_betterproto2_sdk_reencodes_byte_identically(vector: Vector) -> None:
    msg = sdk_class(vector.message).parse(vector.wire)
    assert bytes(msg) == vector.wire


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_betterproto2_sdk_agrees_with_protobuf_on_values(vector: Vector) -> None:
    from google.protobuf.json_format import MessageToDict

    pb = MessageToDict(protobuf_class(vector.message).FromString(vector.wire))
    sdk = sdk_class(vector.message).parse(vector.wire).to_dict()
    assert sdk == pb


def test_frames_survive_varint_delimited_stream() -> None:
    frame_type = kairos.bridge.v1.bridge_pb2.Frame
    frames = [v.wire for v in VECTORS if v.message == "kairos.bridge.v1.Frame"]
    stream = io.BytesIO()
    for wire in frames:
        proto.serialize_length_prefixed(frame_type.FromString(wire), stream)
    stream.seek(0)
    decoded = []
    while (frame := proto.parse_length_prefixed(frame_type, stream)) is not None:
        decoded.append(frame.SerializeToString(deterministic=True))
    assert decoded == frames


def test_ambiguous_result_keeps_negative_retcode_and_utf8_comment() -> None:
    (v,) = [v for v in VECTORS if v.name == "frame_order_result_ambiguous"]
    frame = kairos.bridge.v1.bridge_pb2.Frame.FromString(v.wire)
    assert frame.order_result.retcode == -11
    assert frame.order_result.comment == "соединение потеряно"
    sdk_frame = kairos.sdk.bridge.v1.Frame.parse(v.wire)
    assert sdk_frame.order_result is not None
    assert sdk_frame.order_result.retcode == -11
