"""Transport security of the gRPC port (ADR 0063): TLS or mutual TLS from PEM files that may change.

gRPC calls the fetcher below on every new handshake; it re-reads the files only when their mtime or
size changed, checks the new pair (and client CA) with the standard ``ssl`` module before handing
it to gRPC, and on failure logs, counts and keeps serving the previous pair. gRPC's C core enforces
TLS 1.2 as the minimum version.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import grpc
from prometheus_client import Counter

_Stamp = tuple[tuple[int, int], ...]


class TLSError(Exception):
    """The TLS files cannot be read or do not form a usable pair (the message names the files)."""


class TLSFiles:
    """The server's certificate chain, key and optional client CA, reloaded when they change."""

    def __init__(self, cert: str, key: str, client_ca: str, failures: Counter, log: Any) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._failures = failures
        self._log = log
        self._lock = threading.Lock()
        self._failed: _Stamp | None = None
        try:
            self._loaded: _Stamp = self._stamp()
        except OSError as e:
            raise TLSError(f"TLS files: {e}") from e
        self.initial = self._load()  # a failure here is a start-up error (raises TLSError)

    def _paths(self) -> tuple[str, ...]:
        return (self.cert, self.key, self.client_ca) if self.client_ca else (self.cert, self.key)

    def _stamp(self) -> _Stamp:
        out = []
        for p in self._paths():
            st = os.stat(p)  # follows symlinks: Kubernetes swaps a Secret mount's ..data link
            out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _load(self) -> grpc.ServerCertificateConfiguration:
        ca = None
        check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            with open(self.cert, "rb") as f:
                chain = f.read()
            with open(self.key, "rb") as f:
                key = f.read()
            check.load_cert_chain(self.cert, self.key)  # raises unless the key matches the chain
            if self.client_ca:
                with open(self.client_ca, "rb") as f:
                    ca = f.read()
                check.load_verify_locations(cadata=ca.decode("ascii"))
        except (OSError, UnicodeDecodeError) as e:  # ssl.SSLError is an OSError
            raise TLSError(f"TLS files {self.cert} / {self.key} / {self.client_ca or '-'}: {e}") from e
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher: a new configuration after a good change, else None (keep the current one)."""
        with self._lock:
            try:
                stamp = self._stamp()
            except OSError as e:
                stamp = None
                err: Exception = e
            else:
                if stamp in (self._loaded, self._failed):
                    return None
                try:
                    cfg = self._load()
                    if self._stamp() != stamp:
                        return None  # rewritten while reading: take it on the next handshake
                    self._loaded = stamp
                    self._log.info("TLS certificate reloaded", cert=self.cert, client_ca=self.client_ca)
                    return cfg
                except (OSError, TLSError) as e:
                    err = e
            if stamp is not None:
                self._failed = stamp
            elif self._failed == ():
                return None  # still missing: counted once
            else:
                self._failed = ()
            self._failures.inc()
            self._log.error("TLS reload failed; kept the previous pair", cert=self.cert, error=str(err))
            return None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.initial, self.fetch, require_client_authentication=bool(self.client_ca)
        )


def add_port(server: grpc.aio.Server, listen: str, files: TLSFiles | None) -> int:
    """Bind the gRPC port: TLS when files are given, else plaintext. Returns the port (0 = failed)."""
    if files is None:
        return int(server.add_insecure_port(listen))
    return int(server.add_secure_port(listen, files.credentials()))
