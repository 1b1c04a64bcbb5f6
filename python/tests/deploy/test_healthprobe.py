"""kairos-healthprobe (the containers' and Kubernetes' gRPC health check) against a real grpc.aio
server with the standard health service: plaintext, TLS and mutual TLS with certificates this test
generates, and the exit codes the healthchecks rely on."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from kairos.stack.loopback import free_port

SERVICE = "kairos.collector.v1.MarketDataService"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, usage: x509.ObjectIdentifier
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca("kairos test CA")
    other, _ = _ca("someone else's CA")
    server, server_key = _leaf("kairos-collector", ca, ca_key, ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = _leaf("kairos-healthprobe", ca, ca_key, ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(d / "ca.pem", ca)
    _write(d / "other-ca.pem", other)
    _write(d / "server.pem", server, server_key)
    _write(d / "client.pem", client, client_key)
    return Pki(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "other-ca.pem",
    )


class HealthServer:
    """A grpc.aio server with the health service, on its own event loop thread."""

    def __init__(self, credentials: grpc.ServerCredentials | None) -> None:
        self.port = free_port()
        self._credentials = credentials
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.servicer = health.aio.HealthServicer()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    async def _start(self) -> None:
        self.server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        addr = f"127.0.0.1:{self.port}"
        if self._credentials is None:
            self.server.add_insecure_port(addr)
        else:
            self.server.add_secure_port(addr, self._credentials)
        await self.server.start()
        await self.servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    def set(self, service: str, status: int) -> None:
        asyncio.run_coroutine_threadsafe(self.servicer.set(service, status), self._loop).result(timeout=5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _serve(credentials: grpc.ServerCredentials | None) -> Iterator[HealthServer]:
    srv = HealthServer(credentials)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def plain_server() -> Iterator[HealthServer]:
    yield from _serve(None)


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[HealthServer]:
    creds = grpc.ssl_server_credentials([(pki.server_key.read_bytes(), pki.server_cert.read_bytes())])
    yield from _serve(creds)


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[HealthServer]:
    creds = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    yield from _serve(creds)


def probe(bin_dir: Path, port: int, *args: str, timeout: str = "3s") -> subprocess.CompletedProcess[str]:
    """Runs the probe; cases expected to fail use a short timeout (a refused handshake retries until it)."""
    return subprocess.run(
        [str(bin_dir / "kairos-healthprobe"), "-addr", f"127.0.0.1:{port}", "-timeout", timeout, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_serving_server_exits_zero(deploy_bin: Path, plain_server: HealthServer) -> None:
    out = probe(deploy_bin, plain_server.port, "-service", SERVICE)
    assert out.returncode == 0, out.stderr
    assert "SERVING" in out.stdout


def test_not_serving_exits_one(deploy_bin: Path, plain_server: HealthServer) -> None:
    plain_server.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    out = probe(deploy_bin, plain_server.port, "-service", SERVICE)
    assert out.returncode == 1
    assert "NOT_SERVING" in out.stdout


def test_unknown_service_is_an_rpc_failure(deploy_bin: Path, plain_server: HealthServer) -> None:
    out = probe(deploy_bin, plain_server.port, "-service", "no.such.Service")
    assert out.returncode == 3
    assert "NotFound" in out.stderr


def test_no_server_fails_within_the_timeout(deploy_bin: Path) -> None:
    out = probe(deploy_bin, free_port(), timeout="500ms")
    assert out.returncode == 3
    assert "DeadlineExceeded" in out.stderr


def test_environment_configures_the_probe(deploy_bin: Path, plain_server: HealthServer) -> None:
    import os

    env = {
        **os.environ,
        "KAIROS_HEALTHPROBE_ADDR": f"127.0.0.1:{plain_server.port}",
        "KAIROS_HEALTHPROBE_SERVICE": SERVICE,
    }
    out = subprocess.run(
        [str(deploy_bin / "kairos-healthprobe")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_tls_server_verified_by_the_configured_ca(
    deploy_bin: Path, tls_server: HealthServer, pki: Pki
) -> None:
    assert probe(deploy_bin, tls_server.port, "-tls-ca", str(pki.ca)).returncode == 0


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ((), "plaintext client against a TLS server"),
        (("-tls-ca", "OTHER"), "server certificate from an untrusted CA"),
        (("-tls-ca", "CA", "-tls-server-name", "kairos-inference"), "certificate for another name"),
    ],
)
def test_tls_server_refuses_unverified_connections(
    deploy_bin: Path, tls_server: HealthServer, pki: Pki, args: tuple[str, ...], why: str
) -> None:
    files = {"CA": str(pki.ca), "OTHER": str(pki.other_ca)}
    out = probe(deploy_bin, tls_server.port, *(files.get(a, a) for a in args), timeout="500ms")
    assert out.returncode == 3, why


def test_mutual_tls_needs_the_client_certificate(
    deploy_bin: Path, mtls_server: HealthServer, pki: Pki
) -> None:
    without = probe(deploy_bin, mtls_server.port, "-tls-ca", str(pki.ca), timeout="500ms")
    with_cert = probe(
        deploy_bin,
        mtls_server.port,
        "-tls-ca",
        str(pki.ca),
        "-tls-cert",
        str(pki.client_cert),
        "-tls-key",
        str(pki.client_key),
    )
    assert without.returncode == 3
    assert with_cert.returncode == 0, with_cert.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-tls-cert", "x.pem"), "needs both -tls-cert and -tls-key"),
        (("-timeout", "0s"), "invalid timeout"),
        (("-tls-ca", "/nonexistent/ca.pem"), "read CA bundle"),
        (("extra",), "unexpected arguments"),
    ],
)
def test_bad_usage_exits_two_with_a_reason(deploy_bin: Path, args: tuple[str, ...], message: str) -> None:
    out = probe(deploy_bin, 1, *args)
    assert out.returncode == 2
    assert message in out.stderr
