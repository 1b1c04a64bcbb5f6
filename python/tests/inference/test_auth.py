"""Every InferenceService call needs the bearer token; health and reflection stay open (ADR 0064)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from tests.inference.harness import TOKEN, ServerThread, channel, server_config

from kairos.inference.auth import loopback_peer, token_ok
from kairos.inference.config import ConfigError, load_config
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc

Call = Callable[[inference_pb2_grpc.InferenceServiceStub], object]


def _stream(stub: inference_pb2_grpc.InferenceServiceStub) -> object:
    return list(stub.StreamPredict(iter([pb.StreamPredictRequest(request_id=1)]), timeout=10))


def _predict(stub: inference_pb2_grpc.InferenceServiceStub) -> object:
    return stub.Predict(pb.PredictRequest(), timeout=10)


def _status(stub: inference_pb2_grpc.InferenceServiceStub) -> object:
    return stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)


@pytest.fixture(scope="module")
def servers(model_path: Path) -> Iterator[dict[str, ServerThread]]:
    running = {
        "default": ServerThread(server_config(model_path)).start(),
        "open_reads": ServerThread(server_config(model_path, open_reads_on_loopback=True)).start(),
        "no_token": ServerThread(server_config(model_path, token="")).start(),
    }
    yield running
    for s in running.values():
        s.stop()


@pytest.mark.parametrize(
    ("server", "token", "call", "want"),
    [
        pytest.param(
            "default", "", _stream, grpc.StatusCode.UNAUTHENTICATED, id="StreamPredict_without_a_token"
        ),
        pytest.param(
            "default", "nope", _stream, grpc.StatusCode.UNAUTHENTICATED, id="StreamPredict_wrong_token"
        ),
        pytest.param("default", "", _predict, grpc.StatusCode.UNAUTHENTICATED, id="Predict_without_a_token"),
        pytest.param(
            "default", "", _status, grpc.StatusCode.UNAUTHENTICATED, id="GetModelStatus_without_a_token"
        ),
        pytest.param("default", TOKEN, _status, grpc.StatusCode.OK, id="GetModelStatus_with_the_token"),
        pytest.param("default", TOKEN, _stream, grpc.StatusCode.OK, id="StreamPredict_with_the_token"),
        pytest.param(
            "open_reads", "", _status, grpc.StatusCode.OK, id="GetModelStatus_loopback_when_reads_open"
        ),
        pytest.param(
            "open_reads", "", _stream, grpc.StatusCode.UNAUTHENTICATED, id="StreamPredict_still_needs_it"
        ),
        pytest.param(
            "no_token", TOKEN, _status, grpc.StatusCode.UNAUTHENTICATED, id="no_token_configured_refuses"
        ),
    ],
)
def test_every_call_needs_the_bearer_token(
    servers: dict[str, ServerThread], server: str, token: str, call: Call, want: grpc.StatusCode
) -> None:
    with channel(servers[server].target, token) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        try:
            call(stub)
            got = grpc.StatusCode.OK
        except grpc.RpcError as e:
            got = e.code()
            if want == grpc.StatusCode.UNAUTHENTICATED:
                assert "token" in (e.details() or "")
            elif got != grpc.StatusCode.UNAUTHENTICATED:
                got = grpc.StatusCode.OK  # authenticated; the empty request itself may be refused
    assert got == want


def test_health_needs_no_token(servers: dict[str, ServerThread]) -> None:
    with grpc.insecure_channel(servers["default"].target) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [
        ((("authorization", f"Bearer {TOKEN}"),), True),
        ((("authorization", "Bearer x"), ("authorization", f"Bearer {TOKEN}")), True),
        ((("authorization", TOKEN),), False),
        ((("authorization", f"Bearer {TOKEN[:-1]}"),), False),
        ((), False),
    ],
)
def test_token_ok_wants_exactly_bearer_and_the_token(metadata: tuple[tuple[str, str], ...], ok: bool) -> None:
    assert token_ok(metadata, TOKEN) is ok
    assert token_ok(metadata, "") is False


@pytest.mark.parametrize(
    ("peer", "ok"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv6:[::1]:5000", True),
        ("ipv4:10.0.0.2:5000", False),
        ("unix:/x", False),
    ],
)
def test_loopback_peer(peer: str, ok: bool) -> None:
    assert loopback_peer(peer) is ok


def test_token_file_is_read_and_an_empty_one_refused(tmp_path: Path) -> None:
    good, empty = tmp_path / "token", tmp_path / "empty"
    good.write_text("abc\nignored\n")
    empty.write_text("\n")
    cfg = load_config(["--model", "m.onnx", "--token-file", str(good)], env={})
    assert cfg.token == "abc"
    assert "abc" not in repr(cfg)
    with pytest.raises(ConfigError, match="TOKEN_FILE"):
        load_config(["--model", "m.onnx", "--token-file", str(empty)], env={})
    assert (
        load_config(["--model", "m.onnx", "--open-reads-on-loopback"], env={}).open_reads_on_loopback is True
    )
    assert (
        load_config(
            ["--model", "m.onnx"], env={"KAIROS_INFERENCE_OPEN_READS_ON_LOOPBACK": "false"}
        ).open_reads_on_loopback
        is False
    )
