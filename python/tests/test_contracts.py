"""Specifications of the contracts themselves: documented field by field, and describable by grpcurl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
SERVICES = {
    "kairos/collector/v1/collector.proto": "kairos.collector.v1.MarketDataService",
    "kairos/inference/v1/inference.proto": "kairos.inference.v1.InferenceService",
    "kairos/execution/v1/execution.proto": "kairos.execution.v1.ExecutionService",
}


def tool(name: str) -> str:
    path = shutil.which(name) or str(REPO / ".tools" / "bin" / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed: run `make setup`")
    return path


@pytest.fixture(scope="module")
def image() -> descriptor_pb2.FileDescriptorSet:
    out = subprocess.run(
        [tool("buf"), "build", "--as-file-descriptor-set", "-o", "-"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return descriptor_pb2.FileDescriptorSet.FromString(out)


def undocumented(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Every message, field, enum, value, service and method whose leading comment is empty."""
    comments = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}
    missing: list[str] = []

    def check(path: tuple[int, ...], name: str) -> None:
        if not comments.get(path):
            missing.append(f"{file.name}: {name}")

    def messages(msgs: list[descriptor_pb2.DescriptorProto], path: tuple[int, ...], prefix: str) -> None:
        for i, m in enumerate(msgs):
            p = (*path, i)
            check(p, prefix + m.name)
            for j, f in enumerate(m.field):
                check((*p, 2, j), f"{prefix}{m.name}.{f.name}")
            messages(list(m.nested_type), (*p, 3), f"{prefix}{m.name}.")
            enums(list(m.enum_type), (*p, 4), f"{prefix}{m.name}.")

    def enums(es: list[descriptor_pb2.EnumDescriptorProto], path: tuple[int, ...], prefix: str) -> None:
        for i, e in enumerate(es):
            check((*path, i), prefix + e.name)
            for j, v in enumerate(e.value):
                check((*path, i, 2, j), f"{prefix}{e.name}.{v.name}")

    messages(list(file.message_type), (4,), "")
    enums(list(file.enum_type), (5,), "")
    for i, s in enumerate(file.service):
        check((6, i), s.name)
        for j, m in enumerate(s.method):
            check((6, i, 2, j), f"{s.name}.{m.name}")
    return missing


def test_every_contract_element_is_documented(image: descriptor_pb2.FileDescriptorSet) -> None:
    ours = [f for f in image.file if f.name.startswith("kairos/")]
    assert {f.package for f in ours} == {
        f"kairos.{d}.v1" for d in ("types", "marketdata", "bridge", "collector", "inference", "execution")
    }
    missing = [m for f in ours for m in undocumented(f)]
    assert not missing, "add a comment to:\n" + "\n".join(missing)


def test_order_money_is_fixed_point_never_float(image: descriptor_pb2.FileDescriptorSet) -> None:
    float_types = {
        descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
        descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    }
    (execution,) = [f for f in image.file if f.package == "kairos.execution.v1"]
    floats = [f"{m.name}.{f.name}" for m in execution.message_type for f in m.field if f.type in float_types]
    assert floats == []


@pytest.mark.parametrize(("proto", "service"), SERVICES.items())
def test_grpcurl_describes_every_service(proto: str, service: str) -> None:
    out = subprocess.run(
        [tool("grpcurl"), "-import-path", "proto", "-proto", proto, "describe"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"{service} is a service:" in out
