"""docker-compose.yml and the Dockerfiles as a user relies on them: resolved by `docker compose
config` (no engine needed), every published port on loopback by default, every long-running service
health-checked, images non-root and multi-stage, build inputs present and not ignored, every
variable documented."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import clean_env

REPO = Path(__file__).resolve().parents[3]
ONE_SHOT = {"nats-streams", "training"}  # jobs that exit; no healthcheck expected
BASE = ["-f", "docker-compose.yml"]
DEV = ["-f", "docker-compose.yml", "-f", "docker-compose.dev.yml"]


def resolved(compose: list[str], files: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    cmd = [*compose, "--env-file", str(REPO / ".env.example"), *files, "--profile", "training"]
    proc = subprocess.run(
        [*cmd, "config", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(**(env or {})),
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.fixture(scope="module")
def stack(compose: list[str]) -> dict[str, Any]:
    return resolved(compose, BASE)


def dockerfile(service: dict[str, Any]) -> Path:
    build = service["build"]
    return Path(str(build["context"])) / str(build["dockerfile"])


def test_the_stack_has_every_service_the_issue_names(stack: dict[str, Any]) -> None:
    want = {"nats", "postgres", "mlflow", "collector", "inference", "execution", "prometheus", "grafana"}
    want |= {"console", "alertmanager"}
    assert want <= set(stack["services"])


@pytest.mark.parametrize("files", [BASE, DEV], ids=["base", "dev"])
def test_every_published_port_binds_loopback_by_default(compose: list[str], files: list[str]) -> None:
    for name, svc in resolved(compose, files)["services"].items():
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_publish_address_is_one_variable(compose: list[str]) -> None:
    doc = resolved(compose, BASE, {"KAIROS_PUBLISH_ADDR": "192.0.2.10"})
    ips = {p["host_ip"] for svc in doc["services"].values() for p in svc.get("ports", [])}
    assert ips == {"192.0.2.10"}


def test_inference_scales_without_host_port_collisions(stack: dict[str, Any]) -> None:
    inference = stack["services"]["inference"]
    assert not inference.get("ports"), "fixed host ports would collide with --scale inference=N"
    assert inference["deploy"]["replicas"] == 1


def test_inference_replicas_come_from_the_environment(compose: list[str]) -> None:
    doc = resolved(compose, BASE, {"KAIROS_INFERENCE_REPLICAS": "3"})
    assert doc["services"]["inference"]["deploy"]["replicas"] == 3


def test_long_running_services_are_health_checked(stack: dict[str, Any]) -> None:
    for name, svc in stack["services"].items():
        if name in ONE_SHOT:
            continue
        if "healthcheck" in svc:
            assert svc["healthcheck"]["test"], name
            continue
        assert "build" in svc, f"{name}: a pulled image without a compose healthcheck"
        assert re.search(r"^HEALTHCHECK ", dockerfile(svc).read_text(), re.M), f"{name}: no HEALTHCHECK"


def test_services_start_after_what_they_need(stack: dict[str, Any]) -> None:
    deps = {name: set(svc.get("depends_on", {})) for name, svc in stack["services"].items()}
    assert {"nats-streams", "inference"} <= deps["collector"]
    assert {"postgres", "nats-streams"} <= deps["execution"]
    assert "mlflow" in deps["inference"]
    assert "postgres" in deps["mlflow"]
    assert stack["services"]["collector"]["depends_on"]["nats-streams"]["condition"] == (
        "service_completed_successfully"
    )


def test_services_use_the_external_nats_and_postgres(stack: dict[str, Any]) -> None:
    env = {name: svc.get("environment", {}) for name, svc in stack["services"].items()}
    assert env["collector"]["KAIROS_COLLECTOR_NATS_URL"] == "nats://nats:4222"
    assert env["inference"]["KAIROS_INFERENCE_NATS_URL"] == "nats://nats:4222"
    assert env["execution"]["KAIROS_EXECUTION_NATS_URL"] == "nats://nats:4222"
    assert env["execution"]["KAIROS_EXECUTION_DB"].startswith("postgres://kairos:change-me@postgres:5432/")
    assert env["mlflow"]["MLFLOW_BACKEND_STORE_URI"].startswith(
        "postgresql://kairos:change-me@postgres:5432/"
    )


def test_passwords_are_required(compose: list[str]) -> None:
    proc = subprocess.run(
        [*compose, *BASE, "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(),
    )
    assert proc.returncode != 0
    assert "KAIROS_POSTGRES_PASSWORD" in proc.stderr


def test_secrets_are_files_not_environment(stack: dict[str, Any]) -> None:
    assert set(stack["secrets"]) == {
        "execution_token",
        "collector_token",
        "inference_token",
        "nats_collector",
        "nats_inference",
        "nats_execution",
        "nats_streams",
        "nats_recorder",
        "grafana_admin_password",
        "bridge_key",
        "nats_observer",
        "alertmanager_telegram_bot_token",
        "alertmanager_smtp_password",
    }
    env = {name: stack["services"][name]["environment"] for name in ("collector", "inference", "execution")}
    for name in ("collector", "inference", "execution"):
        prefix = f"KAIROS_{name.upper()}_"
        assert env[name][prefix + "NATS_CREDS"] == f"/run/secrets/nats_{name}"
        assert not {k for k in env[name] if k.endswith(("_TOKEN", "_PASSWORD"))}, env[name]
    assert env["collector"]["KAIROS_COLLECTOR_TOKEN_FILE"] == "/run/secrets/collector_token"
    assert env["collector"]["KAIROS_COLLECTOR_INFERENCE_TOKEN_FILE"] == "/run/secrets/inference_token"
    assert env["inference"]["KAIROS_INFERENCE_TOKEN_FILE"] == "/run/secrets/inference_token"
    for svc in ("collector", "execution"):  # the bridge key the EA proves (docs/security.md)
        assert env[svc][f"KAIROS_{svc.upper()}_BRIDGE_KEY_FILE"] == "/run/secrets/bridge_key"
        assert f"KAIROS_{svc.upper()}_BRIDGE_KEY" not in env[svc]
    grafana = stack["services"]["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert stack["services"]["execution"]["environment"]["KAIROS_EXECUTION_TOKEN_FILE"] == (
        "/run/secrets/execution_token"
    )
    console = stack["services"]["console"]["environment"]
    assert console["KAIROS_CONSOLE_TOKEN_FILE"] == "/run/secrets/execution_token"
    assert console["KAIROS_CONSOLE_NATS_CREDS"] == "/run/secrets/nats_observer"
    assert not {k for k in console if k.endswith(("_TOKEN", "_PASSWORD"))}, console


def test_dev_override_mounts_the_source(compose: list[str]) -> None:
    doc = resolved(compose, DEV)
    mounts = {
        name: {v["target"] for v in svc.get("volumes", []) if v.get("type") == "bind"}
        for name, svc in doc["services"].items()
    }
    assert "/src" in mounts["collector"]
    assert "/src" in mounts["execution"]
    # python/ is mounted first on PYTHONPATH: the `kairos` namespace package (ADR 0080) then takes
    # the hand-written code from the source tree and the generated stubs from the image.
    for name in ("inference", "training"):
        assert "/opt/kairos-src" in mounts[name]
        assert doc["services"][name]["environment"]["PYTHONPATH"] == "/opt/kairos-src"
    for name in ("collector", "execution", "inference"):
        assert doc["services"][name]["build"]["target"] == "dev"


def test_every_compose_variable_is_documented(deploy: ModuleType) -> None:
    deploy.check_env()


# --- Dockerfiles ----------------------------------------------------------------------------------

DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))


def _dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!")
        hit = fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat + "/*") or rel.startswith(pat + "/")
        if pat.startswith("**/"):
            hit = hit or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pat[3:])
        if hit:
            ignored = not negate
    return ignored


SERVICE_DOCKERFILES = [p for p in DOCKERFILES if p.stem != "bridge"]


@pytest.mark.parametrize("path", SERVICE_DOCKERFILES, ids=[p.stem for p in SERVICE_DOCKERFILES])
def test_dockerfile_is_multi_stage_and_runs_as_non_root(path: Path) -> None:
    text = path.read_text()
    stages = re.findall(r"^FROM \S+(?: AS (\S+))?", text, re.M)
    assert len(stages) >= 2, "multi-stage: build tools never reach the runtime image"
    final = text[text.rindex("\nFROM ") :]
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users, "the runtime stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^ENTRYPOINT ", final, re.M)


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_dockerfile_inputs_exist_and_are_not_ignored(path: Path) -> None:
    patterns = _dockerignore()
    for line in re.findall(r"^COPY (?!--from)(.+)$", path.read_text(), re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            rel = src.rstrip("/").rstrip("*")
            candidates = list(REPO.glob(src)) if "*" in src else [REPO / rel]
            if src.endswith("*") or "go.sum*" in src:
                continue  # optional files (go.sum of a module without dependencies yet)
            assert any(c.exists() for c in candidates), f"{path.name}: COPY {src} does not exist"
            assert not _ignored(rel, patterns), f"{path.name}: COPY {src} is excluded by .dockerignore"


def test_bridge_dll_is_built_by_mingw_and_exported_as_an_artifact() -> None:
    text = (REPO / "docker" / "bridge.Dockerfile").read_text()
    assert "g++-mingw-w64-x86-64-posix" in text
    assert "mingw-w64-x86_64.cmake" in text
    assert re.search(r"^FROM scratch AS artifact$", text, re.M), "exported with --output, never run"
    assert re.search(r"^USER 10001", text, re.M), "the build itself runs unprivileged after apt-get"
    assert "grep -qvE '^(kernel32|msvcrt|ws2_32)\\.dll$'" in text


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = _dockerignore()
    for rel in (".git", ".venv", ".tools", "build", ".env", "deploy/certs", "deploy/secrets", "x/server.key"):
        assert _ignored(rel, patterns), rel
    for rel in ("python/inference/server.py", "go/collector/go.mod", "uv.lock", "tools/deploy/go.mod"):
        assert not _ignored(rel, patterns), rel


def test_python_images_install_only_locked_runtime_wheels() -> None:
    for name in ("inference", "mlflow"):
        text = (REPO / "docker" / f"{name}.Dockerfile").read_text()
        assert "uv export --locked --no-dev" in text
        assert "--require-hashes" in text
        assert "--extra training" not in text, f"{name} must not pull torch"
        assert "python:3.11-slim" in text


def test_inference_image_runs_the_cpp_feature_kernel() -> None:
    """ADR 0103: a build stage compiles cpp/features (pybind11 from the lock, hash-checked) and the
    runtime and dev stages point kairos.features.native at the one .so, with no compiler in them."""
    text = (REPO / "docker" / "inference.Dockerfile").read_text()
    stage = text[text.index(" AS features\n") : text.index(" AS build\n")]
    assert "COPY cpp/features cpp/features" in stage
    assert "cmake --build" in stage and "--require-hashes" in stage and "^pybind11==" in stage
    ext = "/opt/kairos/lib/kairos_features_ext.so"
    for name in ("dev", "runtime"):
        start = text.index(f" AS {name}\n")
        end = text.find("\nFROM ", start)
        body = text[start : end if end >= 0 else len(text)]
        assert f"COPY --from=features /out/kairos_features_ext.so {ext}" in body, name
        assert f"KAIROS_FEATURES_EXT={ext}" in body, name
        assert "g++" not in body and "cmake" not in body, f"{name}: no compiler in the image"


@pytest.mark.parametrize(
    ("compose_text", "env_text", "message"),
    [
        ("x: ${KAIROS_A:-1} ${KAIROS_B}\n", "# a\nKAIROS_A=1\n", "KAIROS_B: used in the compose files"),
        ("x: ${KAIROS_A:-1}\n", "# a\nKAIROS_A=1\n# stale\nKAIROS_OLD=2\n", "KAIROS_OLD is not used"),
        ("x: ${KAIROS_A:-1}\n", "KAIROS_A=1\n", "KAIROS_A has no comment above it"),
    ],
)
def test_env_documentation_check_names_the_problem(
    deploy: ModuleType, tmp_path: Path, compose_text: str, env_text: str, message: str
) -> None:
    compose_file, env_file = tmp_path / "compose.yml", tmp_path / ".env.example"
    compose_file.write_text(compose_text)
    env_file.write_text(env_text)
    with pytest.raises(deploy.CheckError, match=re.escape(message)):
        deploy.check_env([compose_file], env_file)
