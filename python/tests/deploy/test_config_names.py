"""Every KAIROS_<SERVICE>_* variable the deployment files set is one the service really reads, and a
setting the services share is spelt the same in each.

A misspelt variable is silently ignored by a service, so this compares the names used in the
compose files, the Dockerfiles and the rendered Kubernetes manifests with each service's typed
configuration (the Go services' flag sets, the inference config dataclass), read the same way as
`make config-docs` does. Skips, naming what is missing, while a service's code is not in the tree.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[3]
PREFIXES = {
    "kairos-collector": "KAIROS_COLLECTOR_",
    "kairos-inference": "KAIROS_INFERENCE_",
    "kairos-execution": "KAIROS_EXECUTION_",
    "kairos-healthprobe": "KAIROS_HEALTHPROBE_",
    "kairos-console": "KAIROS_CONSOLE_",
}


def used_names(kustomize: Path) -> dict[str, set[str]]:
    """Variable names set by the deployment files, mapped to the files that set them."""
    texts: dict[str, str] = {}
    for path in [
        REPO / "docker-compose.yml",
        REPO / "docker-compose.dev.yml",
        *(REPO / "docker").glob("*.Dockerfile"),
    ]:
        texts[str(path.relative_to(REPO))] = path.read_text()
    for overlay in ("dev", "scaleout", "scaleout-tls"):
        out = subprocess.run(
            [str(kustomize), "build", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        texts[f"deploy/k8s/overlays/{overlay}"] = out
    found: dict[str, set[str]] = {}
    for where, text in texts.items():
        # Assignments only (compose environment keys, ENV lines, k8s env names), not ${...} reads.
        for m in re.finditer(
            r"(?:^|[\s\"'-])(KAIROS_(?:COLLECTOR|INFERENCE|EXECUTION|HEALTHPROBE|CONSOLE)_[A-Z0-9_]+)(?=[:=\"'])",
            text,
            re.M,
        ):
            found.setdefault(m.group(1), set()).add(where)
        for m in re.finditer(r"name: (KAIROS_[A-Z0-9_]+)", text):
            found.setdefault(m.group(1), set()).add(where)
    return found


def test_deployment_variables_exist_in_the_services_configs(
    deploy: ModuleType, kustomize: Path, tmp_path: Path
) -> None:
    services = deploy.services(tmp_path / "bin")
    deploy.build_go_binaries(tmp_path / "bin")
    known = {o.env for s in services for o in deploy.read_options(s)}
    used = used_names(kustomize)
    unknown = {
        name: sorted(where)
        for name, where in used.items()
        if name.startswith(tuple(PREFIXES.values())) and name not in known
    }
    assert not unknown, f"variables no service reads (misspelt or removed): {unknown}"


# The same concept has the same flag (and so the same variable suffix) in every service that has it.
SHARED = {
    "grpc-addr": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "metrics-addr": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "log-level": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "shutdown-timeout": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "nats-url": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "tls-cert": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "tls-key": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "tls-client-ca": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "bridge-addr": ("kairos-collector", "kairos-execution"),
    "heartbeat-interval": ("kairos-collector", "kairos-execution"),
    "nats-queue": ("kairos-collector", "kairos-inference"),
    "allowed-symbols": ("kairos-inference", "kairos-execution"),
    "grpc-max-concurrent-streams": ("kairos-collector", "kairos-inference", "kairos-execution"),
    "grpc-keepalive-min-time": ("kairos-collector", "kairos-inference", "kairos-execution"),
}
# Spellings the shared names replaced; none may come back.
RETIRED = ("listen", "metrics-listen", "shutdown-grace-s", "symbols", "signal-queue-size", "mt5-heartbeat")


def test_a_shared_setting_has_one_name_in_every_service(deploy: ModuleType, tmp_path: Path) -> None:
    deploy.build_go_binaries(tmp_path / "bin")
    options = {
        s.name: {o.flag.lstrip("-"): o for o in deploy.read_options(s)}
        for s in deploy.services(tmp_path / "bin")
        if s.name in PREFIXES and s.name != "kairos-healthprobe"
    }
    for name, owners in SHARED.items():
        for svc in owners:
            assert name in options[svc], f"{svc} has no --{name}"
            assert options[svc][name].env == PREFIXES[svc] + name.replace("-", "_").upper()
    for svc, opts in options.items():
        assert not set(RETIRED) & opts.keys(), f"{svc} still spells {set(RETIRED) & opts.keys()}"
        levels = opts["log-level"].help
        assert re.search(r"\bwarn\b", levels) and "warning" not in levels, f"{svc}: {levels}"


def test_used_names_finds_assignments_in_every_format(kustomize: Path) -> None:
    used = used_names(kustomize)
    assert "docker-compose.yml" in used["KAIROS_COLLECTOR_NATS_URL"]
    assert "docker/execution.Dockerfile" in used["KAIROS_EXECUTION_GRPC_ADDR"]
    assert "deploy/k8s/overlays/scaleout" in used["KAIROS_COLLECTOR_INFERENCE_ENDPOINTS"]
    assert "KAIROS_POSTGRES_PASSWORD" not in used, "compose reads it, no service does"
