"""Peer bounds of the inference server, named and enforced as in the Go services (server.go)."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

import grpc
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import ServerThread, channel, proto_bars

from kairos.inference.config import ConfigError, InferenceConfig
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc


def test_a_connection_gets_at_most_the_configured_concurrent_streams(
    start_server: Callable[..., ServerThread], model_path: Path, gbpusd: pd.DataFrame
) -> None:
    srv = start_server(model_path, grpc_max_concurrent_streams=1)
    ch = channel(srv.target)
    stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
    out: queue.Queue[pb.StreamPredictRequest | None] = queue.Queue()
    stream = stub.StreamPredict(iter(out.get, None), timeout=60)
    try:
        out.put(pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[:5])))
        assert next(stream).request_id == 1  # the one stream this connection may have is open
        # A second call on the same connection waits for a stream slot: it cannot start.
        with pytest.raises(grpc.RpcError) as waited:
            stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=1)
        assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        out.put(None)
        for _ in stream:
            pass
    # With the stream done, the slot is free again.
    assert stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10).models
    ch.close()


@pytest.mark.parametrize(
    ("field", "value"), [("grpc_max_concurrent_streams", 0), ("grpc_keepalive_min_time", 0.0)]
)
def test_a_bound_that_is_not_positive_is_refused_naming_the_setting(field: str, value: object) -> None:
    cfg = InferenceConfig(**{"model": "m.onnx", field: value})
    flag = "--" + field.replace("_", "-")
    with pytest.raises(ConfigError, match=flag):
        cfg.validate()
