"""`kairos up --shadow-models`: the stack's inference server is started with the challengers in shadow
(the same service spec `kairos up` starts, a real process on loopback, GetModelStatus with its token)."""

from __future__ import annotations

from pathlib import Path

import grpc
from tests.inference.harness import MODEL_DIR, with_card

from kairos.features import ModelCard
from kairos.inference.auth import with_token
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack import processes, services


def test_up_passes_the_shadow_models_to_the_inference_server(tmp_path: Path) -> None:
    model = MODEL_DIR / "model.onnx"
    twin = with_card(model, tmp_path / "twin" / "model.onnx", version="twin")
    settings = services.StackSettings(
        ports=services.Ports.free(), run_dir=tmp_path / "run", model=str(model), shadow_models=(str(twin),)
    )
    unused = {name: tmp_path / name for name in services.GO_BINARIES}  # only inference is started here
    (spec,) = [s for s in services.specs(settings, unused) if s.name == "inference"]
    assert f"--shadow-models={twin}" in spec.argv
    with processes.Stack(settings.run_dir) as stack:
        stack.wait_ready(stack.start(spec))
        token = settings.credentials().token("inference")
        with with_token(grpc.insecure_channel(spec.grpc_addr), token) as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
            resp = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
    roles = {m.role: m.model_version for m in resp.models}
    assert roles == {"serving": ModelCard.from_onnx(model).version, "shadow": "twin"}, roles
    # Without the setting nothing is passed (KAIROS_INFERENCE_SHADOW_MODELS in the environment still is).
    plain = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path / "run2", model=str(model))
    (spec,) = [s for s in services.specs(plain, unused) if s.name == "inference"]
    assert not any(a.startswith("--shadow-models") for a in spec.argv)
