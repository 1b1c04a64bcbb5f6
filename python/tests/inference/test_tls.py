"""Transport security of the inference server (ADR 0063): TLS and mutual TLS on the gRPC port, with
health and reflection under the same TLS, and certificates reloaded when their files change."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # type: ignore[import-untyped]
from tests.inference.harness import ServerThread, metric
from tests.inference.pki import CA, Files

from kairos.inference.config import ConfigError, load_config


def _check(target: str, creds: grpc.ChannelCredentials | None) -> None:
    """One health call and one reflection listing on a fresh channel; raises grpc.RpcError."""
    ch = grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds)
    with ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        ask = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        out = next(iter(refl.ServerReflectionInfo(ask, timeout=5)))
        names = {s.name for s in out.list_services_response.service}
        assert "kairos.inference.v1.InferenceService" in names


def _creds(ca: Path, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        ca.read_bytes(), key.read_bytes() if key else None, cert.read_bytes() if cert else None
    )


def _peer_cert(target: str) -> bytes:
    """The leaf the server presents on a fresh handshake (no verification: inspection only)."""
    host, port = target.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return der


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files.new(tmp_path)


def test_tls_serves_verified_clients_and_refuses_plaintext(
    start_server: Callable[..., ServerThread], model_path: Path, files: Files, tmp_path: Path
) -> None:
    srv = start_server(model_path, tls_cert=str(files.server_cert), tls_key=str(files.server_key))
    _check(srv.target, _creds(files.ca_file))
    with pytest.raises(grpc.RpcError):
        _check(srv.target, None)
    other = tmp_path / "other.crt"
    other.write_bytes(CA.new("other CA").pem)
    with pytest.raises(grpc.RpcError):
        _check(srv.target, _creds(other))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_refuses_versions_below_1_2(
    start_server: Callable[..., ServerThread], model_path: Path, files: Files
) -> None:
    srv = start_server(model_path, tls_cert=str(files.server_cert), tls_key=str(files.server_key))
    host, port = srv.target.rsplit(":", 1)

    def handshake(version: ssl.TLSVersion) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        ctx.set_alpn_protocols(["h2"])
        with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw):
            pass

    handshake(ssl.TLSVersion.TLSv1_2)  # control: the same client set-up works at 1.2
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(ssl.TLSVersion.TLSv1_1)


def test_mutual_tls_refuses_clients_without_a_certificate_or_from_another_ca(
    start_server: Callable[..., ServerThread], model_path: Path, files: Files, tmp_path: Path
) -> None:
    srv = start_server(
        model_path,
        tls_cert=str(files.server_cert),
        tls_key=str(files.server_key),
        tls_client_ca=str(files.ca_file),
    )
    _check(srv.target, _creds(files.ca_file, files.client_cert, files.client_key))
    with pytest.raises(grpc.RpcError):
        _check(srv.target, _creds(files.ca_file))
    oc, ok = CA.new("intruder CA").issue("intruder")
    (tmp_path / "o.crt").write_bytes(oc)
    (tmp_path / "o.key").write_bytes(ok)
    with pytest.raises(grpc.RpcError):
        _check(srv.target, _creds(files.ca_file, tmp_path / "o.crt", tmp_path / "o.key"))


def test_reload_picks_up_a_new_certificate_and_keeps_the_old_one_when_the_new_is_broken(
    start_server: Callable[..., ServerThread], model_path: Path, files: Files
) -> None:
    srv = start_server(model_path, tls_cert=str(files.server_cert), tls_key=str(files.server_key))
    first = _peer_cert(srv.target)

    cert2, key2 = files.ca.issue("server renewed")
    files.server_cert.write_bytes(cert2)
    files.server_key.write_bytes(key2)
    second = _peer_cert(srv.target)
    assert second != first, "the server still presents the first certificate"
    _check(srv.target, _creds(files.ca_file))
    assert metric(srv.metrics_text(), "kairos_inference_tls_reload_failures_total") == 0

    files.server_cert.write_bytes(cert2[: len(cert2) // 2])  # truncated PEM
    for _ in range(3):
        assert _peer_cert(srv.target) == second
    _check(srv.target, _creds(files.ca_file))
    assert metric(srv.metrics_text(), "kairos_inference_tls_reload_failures_total") == 1


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--tls-cert", "/c"], ["--tls-cert", "--tls-key", "KAIROS_INFERENCE_TLS_KEY"]),
        (["--tls-key", "/k"], ["--tls-cert", "--tls-key", "KAIROS_INFERENCE_TLS_CERT"]),
        (["--tls-client-ca", "/ca"], ["--tls-client-ca", "--tls-cert"]),
    ],
)
def test_half_a_tls_configuration_is_an_error_naming_both(argv: list[str], named: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(["--model", "m.onnx", *argv], env={})
    for n in named:
        assert n in str(e.value)


def test_tls_settings_come_from_the_environment() -> None:
    env = {
        "KAIROS_INFERENCE_TLS_CERT": "/c",
        "KAIROS_INFERENCE_TLS_KEY": "/k",
        "KAIROS_INFERENCE_TLS_CLIENT_CA": "/ca",
    }
    cfg = load_config(["--model", "m.onnx"], env=env)
    assert (cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) == ("/c", "/k", "/ca")


def test_unreadable_tls_files_stop_the_start(model_path: Path, files: Files) -> None:
    from tests.inference.harness import server_config

    from kairos.inference.tls import TLSError

    mismatched = server_config(model_path, tls_cert=str(files.server_cert), tls_key=str(files.client_key))
    st = ServerThread(mismatched)
    try:
        with pytest.raises(TLSError, match=r"server\.crt"):
            st.start()
    finally:
        st.loop.call_soon_threadsafe(st.loop.stop)
        st.thread.join(10)
        st.loop.close()


def test_a_missing_key_keeps_the_pair_serving_until_a_new_pair_arrives(
    start_server: Callable[..., ServerThread], model_path: Path, files: Files
) -> None:
    srv = start_server(model_path, tls_cert=str(files.server_cert), tls_key=str(files.server_key))
    first = _peer_cert(srv.target)
    files.server_key.unlink()
    for _ in range(3):
        assert _peer_cert(srv.target) == first
    assert metric(srv.metrics_text(), "kairos_inference_tls_reload_failures_total") == 1
    cert2, key2 = files.ca.issue("server renewed")
    files.server_cert.write_bytes(cert2)
    files.server_key.write_bytes(key2)
    assert _peer_cert(srv.target) != first
    _check(srv.target, _creds(files.ca_file))
