"""The local stack's credentials, generated once per run directory (ADR 0064, docs/security.md).

Files, every one mode 0600:

- ``token``: execution's bearer token; ``collector.token``, ``inference.token``: the other services'.
- ``nats/auth.conf``: a copy of deploy/nats/auth.conf (the identities and their subject permissions),
  handed to the collector's embedded NATS server; ``nats/passwords.conf`` beside it defines the
  passwords it includes.
- ``nats/<identity>.creds``: one line ``user:password`` per identity (collector, inference, execution,
  observer, streams, recorder), passed to each service with ``--nats-creds``.

Secrets travel as file paths, never in argv or logs. Rotation: delete the files and restart the stack.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
AUTH_CONF = REPO / "deploy" / "nats" / "auth.conf"
NATS_IDENTITIES = ("collector", "inference", "execution", "observer", "streams", "recorder")
SERVICES = ("execution", "collector", "inference")


def write_secret(path: Path, content: str) -> None:
    """Writes a file only its owner may read (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path, 0o600)


def _token_path(run_dir: Path, service: str) -> Path:
    return run_dir / ("token" if service == "execution" else f"{service}.token")


def read_token(run_dir: Path, service: str) -> str:
    """A service's bearer token from the run directory ("" when absent)."""
    p = _token_path(run_dir, service)
    return p.read_text().strip() if p.exists() else ""


@dataclass(frozen=True)
class Credentials:
    run_dir: Path

    def token_file(self, service: str) -> Path:
        return _token_path(self.run_dir, service)

    def token(self, service: str) -> str:
        return read_token(self.run_dir, service)

    @property
    def nats_auth_file(self) -> Path:
        return self.run_dir / "nats" / "auth.conf"

    def nats_creds(self, identity: str) -> Path:
        return self.run_dir / "nats" / f"{identity}.creds"


def nats_password_variable(identity: str) -> str:
    return f"KAIROS_NATS_{identity.upper()}_PASSWORD"


def write_nats_credentials(directory: Path, auth_conf: Path = AUTH_CONF) -> None:
    """auth.conf, passwords.conf and one <identity>.creds per identity in directory (fresh passwords)."""
    passwords = {i: secrets.token_urlsafe(24) for i in NATS_IDENTITIES}
    write_secret(directory / "auth.conf", auth_conf.read_text())
    write_secret(
        directory / "passwords.conf",
        "# Generated; the passwords deploy/nats/auth.conf includes (ADR 0064).\n"
        + "".join(f'{nats_password_variable(i)}: "{p}"\n' for i, p in passwords.items()),
    )
    for identity, password in passwords.items():
        write_secret(directory / f"{identity}.creds", f"{identity}:{password}\n")


def ensure(run_dir: Path, execution_token: str = "") -> Credentials:
    """Creates whatever credential of the run directory is missing; returns their paths."""
    creds = Credentials(run_dir)
    for service in SERVICES:
        path = creds.token_file(service)
        if service == "execution" and execution_token:
            if not path.exists() or path.read_text().strip() != execution_token:
                write_secret(path, execution_token + "\n")
        elif not path.exists():
            write_secret(path, secrets.token_urlsafe(24) + "\n")
    nats_dir = run_dir / "nats"
    complete = (
        all(creds.nats_creds(i).exists() for i in NATS_IDENTITIES) and (nats_dir / "passwords.conf").exists()
    )
    if not complete:
        write_nats_credentials(nats_dir)
    elif creds.nats_auth_file.read_text() != AUTH_CONF.read_text():
        write_secret(creds.nats_auth_file, AUTH_CONF.read_text())  # permissions changed in the repo
    return creds


def nats_connect_kwargs(creds_file: Path | str | None) -> dict[str, str]:
    """``user``/``password`` for ``nats.connect`` from a creds file; none when there is no file."""
    if not creds_file or not Path(creds_file).exists():
        return {}
    from kairos.inference.signals import nats_credentials

    return nats_credentials(str(creds_file))


def main(argv: list[str] | None = None) -> int:
    """``python -m kairos.stack.credentials DIR``: fresh NATS passwords and creds files for compose or
    Kubernetes secrets (auth.conf, passwords.conf, <identity>.creds; mode 0600). Rotation: run it
    again, then restart NATS and the services."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m kairos.stack.credentials DIR", file=sys.stderr)
        return 2
    write_nats_credentials(Path(args[0]))
    for service in ("collector", "inference"):
        path = Path(args[0]).parent / f"{service}-token"
        if not path.exists():
            write_secret(path, secrets.token_urlsafe(32) + "\n")
    print(f"NATS credentials written to {args[0]} (mode 0600)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
