"""The Kubernetes manifests as rendered by kustomize (the same build `make lint` validates against
the Kubernetes schemas): probes on the gRPC health endpoints, resource requests, restricted pod
security, and the scale-out rules of ADR 0061 (collector per terminal group, inference by symbol
shard, one execution per account)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[3]
OVERLAYS = ["dev", "scaleout"]
GRPC_PORTS = {"collector": 7401, "inference": 7501, "execution": 7601}
METRICS_PORTS = {"collector": 9401, "inference": 9501, "execution": 9601}


def render(kustomize: Path, overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(kustomize), "build", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def manifests(request: pytest.FixtureRequest, kustomize: Path) -> list[dict[str, Any]]:
    return render(kustomize, request.param)


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def component(doc: dict[str, Any]) -> str:
    return str(doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"])


def by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_everything_lives_in_the_kairos_namespace(manifests: list[dict[str, Any]]) -> None:
    for d in manifests:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "kairos", d["metadata"]["name"]
            assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kairos", d["metadata"]["name"]


def test_services_are_probed_on_their_grpc_health_endpoint(manifests: list[dict[str, Any]]) -> None:
    seen = set()
    for w in workloads(manifests):
        comp = component(w)
        if comp not in GRPC_PORTS:
            continue
        seen.add(comp)
        (c,) = w["spec"]["template"]["spec"]["containers"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == GRPC_PORTS[comp], f"{w['metadata']['name']} {probe}"
    assert seen == set(GRPC_PORTS)


def test_every_container_has_requests_limits_and_a_restricted_security_context(
    manifests: list[dict[str, Any]],
) -> None:
    for w in workloads(manifests):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, w["metadata"]["name"]
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"]), c[
                "name"
            ]
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]


def test_metrics_ports_are_named_for_the_scraper(manifests: list[dict[str, Any]]) -> None:
    services = by_kind_name(manifests)
    for comp, port in METRICS_PORTS.items():
        svc = services[("Service", f"kairos-{comp}-metrics")]
        assert svc["spec"]["clusterIP"] == "None", "headless: DNS lists every pod"
        assert svc["spec"]["ports"][0]["port"] == port
    prom = (REPO / "deploy" / "prometheus" / "prometheus-k8s.yml").read_text()
    for comp in METRICS_PORTS:
        assert f"kairos-{comp}-metrics.kairos.svc.cluster.local" in prom


def test_execution_is_one_writer_per_account(manifests: list[dict[str, Any]]) -> None:
    ex = by_kind_name(manifests)[("Deployment", "kairos-execution")]
    assert ex["spec"]["replicas"] == 1
    assert ex["spec"]["strategy"]["type"] == "Recreate"
    env = env_of(ex["spec"]["template"]["spec"]["containers"][0])
    assert env["KAIROS_EXECUTION_DB"]["secretKeyRef"]["key"] == "dsn"
    assert "KAIROS_EXECUTION_TOKEN" not in env, "the bearer token comes from a file, never an env value"


def test_collectors_list_every_inference_shard(manifests: list[dict[str, Any]]) -> None:
    docs = by_kind_name(manifests)
    replicas = docs[("StatefulSet", "kairos-inference")]["spec"]["replicas"]
    shards = [f"kairos-inference-{i}.kairos-inference:7501" for i in range(replicas)]
    collectors = [d for (kind, _), d in docs.items() if kind == "Deployment" and component(d) == "collector"]
    assert collectors
    for c in collectors:
        env = env_of(c["spec"]["template"]["spec"]["containers"][0])
        assert env["KAIROS_COLLECTOR_INFERENCE_ENDPOINTS"].split(",") == shards, c["metadata"]["name"]


def test_scaleout_runs_shards_groups_and_replicated_streams(kustomize: Path) -> None:
    docs = by_kind_name(render(kustomize, "scaleout"))
    assert docs[("StatefulSet", "kairos-inference")]["spec"]["replicas"] == 3
    groups = {name for (kind, name) in docs if kind == "Deployment" and name.startswith("kairos-collector")}
    assert groups == {"kairos-collector", "kairos-collector-group-b"}
    # Each group's Services select only that group's pod.
    for name in groups:
        svc = docs[("Service", name)]["spec"]["selector"]
        pod = docs[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert svc.items() <= pod.items()
    other = docs[("Deployment", "kairos-collector-group-b")]["spec"]["template"]["metadata"]["labels"]
    assert not docs[("Service", "kairos-collector")]["spec"]["selector"].items() <= other.items()
    job = docs[("Job", "kairos-nats-streams")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][-2:] == ["-replicas", "3"]
    nats_urls = docs[("ConfigMap", "kairos-endpoints")]["data"]["NATS_URL"].split(",")
    assert len(nats_urls) == 3


def test_dev_brings_nats_with_jetstream_and_postgres(kustomize: Path) -> None:
    docs = by_kind_name(render(kustomize, "dev"))
    nats = docs[("StatefulSet", "nats")]["spec"]["template"]["spec"]["containers"][0]
    assert nats["args"] == ["--config", "/etc/nats/nats.conf"]
    assert "jetstream {" in (REPO / "deploy" / "nats" / "nats.conf").read_text()
    assert ("StatefulSet", "postgres") in docs
    assert docs[("ConfigMap", "kairos-endpoints")]["data"]["NATS_URL"] == "nats://nats:4222"


def test_tls_overlay_turns_on_mutual_tls_and_probes_over_it(kustomize: Path) -> None:
    docs = render(kustomize, "scaleout-tls")
    dockerfiles = {c: (REPO / "docker" / f"{c}.Dockerfile").read_text() for c in GRPC_PORTS}
    for w in workloads(docs):
        comp = component(w)
        if comp not in GRPC_PORTS:
            continue
        pod = w["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = env_of(c)
        prefix = f"KAIROS_{comp.upper()}_TLS_"
        assert env[prefix + "CERT"] == "/etc/kairos/tls/tls.crt"
        assert env[prefix + "KEY"] == "/etc/kairos/tls/tls.key"
        assert env[prefix + "CLIENT_CA"] == "/etc/kairos/tls/ca.crt"
        (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert tls["secret"] == {"secretName": f"kairos-{comp}-tls", "optional": False}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            cmd = c[probe]["exec"]["command"]
            assert "grpc" not in c[probe], "native gRPC probes cannot speak TLS"
            assert cmd[0] == "/usr/local/bin/kairos-healthprobe"
            assert cmd[cmd.index("-addr") + 1] == f"127.0.0.1:{GRPC_PORTS[comp]}"
            assert {"-tls-ca", "-tls-cert", "-tls-key"} <= set(cmd)
        assert "/usr/local/bin/" in dockerfiles[comp] and "kairos-healthprobe" in dockerfiles[comp]
        if comp == "collector":
            assert env["KAIROS_COLLECTOR_INFERENCE_TLS_CA"] == "/etc/kairos/tls/ca.crt"


def test_the_console_and_alertmanager_are_deployed_and_the_console_follows_tls(kustomize: Path) -> None:
    for overlay in OVERLAYS:
        docs = by_kind_name(render(kustomize, overlay))
        console = docs[("Deployment", "kairos-console")]
        env = env_of(console["spec"]["template"]["spec"]["containers"][0])
        assert env["KAIROS_CONSOLE_TOKEN_FILE"] == "/etc/kairos/token/token"
        assert "KAIROS_CONSOLE_TLS_CA" not in env
        assert docs[("Service", "kairos-console-metrics")]["spec"]["clusterIP"] == "None"
        am = docs[("Deployment", "kairos-alertmanager")]
        assert am["spec"]["replicas"] == 1
        mounts = {m["mountPath"] for m in am["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert {"/etc/alertmanager", "/run/secrets"} <= mounts
    tls = by_kind_name(render(kustomize, "scaleout-tls"))[("Deployment", "kairos-console")]
    pod = tls["spec"]["template"]["spec"]
    env = env_of(pod["containers"][0])
    assert env["KAIROS_CONSOLE_TLS_CA"] == "/etc/kairos/tls/ca.crt"
    assert env["KAIROS_CONSOLE_TLS_CERT"] == "/etc/kairos/tls/tls.crt"
    (vol,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert vol["secret"]["secretName"] == "kairos-console-tls"
    prom = (REPO / "deploy" / "prometheus" / "prometheus-k8s.yml").read_text()
    assert "kairos-console-metrics.kairos.svc.cluster.local" in prom
    assert "kairos-alertmanager.kairos.svc.cluster.local:9093" in prom


def test_the_recorder_keeps_its_dataset_on_a_volume_and_records_from_jetstream(kustomize: Path) -> None:
    """ADR 0084 in the cluster: one writer, durable JetStream consumers, the dataset on a persistent
    claim, probed on its gRPC health, scraped on 9701 (prometheus-k8s.yml)."""
    for overlay in [*OVERLAYS, "scaleout-tls"]:
        docs = by_kind_name(render(kustomize, overlay))
        rec = docs[("StatefulSet", "kairos-recorder")]
        assert rec["spec"]["replicas"] == 1 and component(rec) == "recorder"
        pod = rec["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = env_of(c)
        assert c["command"] == ["kairos-record"] and "kairos/inference:" in c["image"]
        assert env["KAIROS_RECORDER_JETSTREAM"] == "true"
        assert env["KAIROS_RECORDER_DIR"] == "/recorded"
        assert env["KAIROS_RECORDER_NATS_CREDS"] == "/etc/kairos/nats/recorder"
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["recorded"] == "/recorded"
        (claim,) = rec["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "recorded" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == 7701
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"grpc": 7701, "metrics": 9701}
        svc = docs[("Service", "kairos-recorder-metrics")]
        assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["ports"][0]["port"] == 9701
        policy = docs[("NetworkPolicy", "kairos-recorder")]
        assert [p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]] == [9701]
    prom = (REPO / "deploy" / "prometheus" / "prometheus-k8s.yml").read_text()
    assert "kairos-recorder-metrics.kairos.svc.cluster.local" in prom


# --- NATS authentication (ADR 0064) ------------------------------------------------------------


def test_every_service_runs_as_its_own_nats_identity(
    manifests: list[dict[str, Any]], deploy: ModuleType, deploy_bin: Path
) -> None:
    checked = deploy.check_k8s_nats(manifests, nats_server=str(deploy_bin / "nats-server"))
    identities = {line.rsplit(" ", 1)[-1] for line in checked if "NATS identity" in line}
    assert identities == {"collector", "inference", "execution", "streams", "observer", "recorder"}


def test_a_workload_without_nats_credentials_is_caught(
    kustomize: Path, deploy: ModuleType, deploy_bin: Path
) -> None:
    docs = render(kustomize, "dev")
    (execution,) = [d for d in workloads(docs) if component(d) == "execution"]
    (c,) = execution["spec"]["template"]["spec"]["containers"]
    c["env"] = [e for e in c["env"] if e["name"] != "KAIROS_EXECUTION_NATS_CREDS"]
    with pytest.raises(deploy.CheckError, match="without credentials"):
        deploy.check_k8s_nats(docs, nats_server=str(deploy_bin / "nats-server"))


def _dev_nats_files(docs: list[dict[str, Any]], deploy: ModuleType) -> tuple[dict[str, str], dict[str, str]]:
    """The dev NATS server's /etc/nats files and the identities' user:password, as rendered."""
    by_name = {(d["kind"], deploy._k8s_base_name(d["metadata"]["name"])): d for d in docs}
    files = dict(by_name[("ConfigMap", "kairos-nats-config")]["data"])
    files["passwords.conf"] = deploy._secret_data(by_name[("Secret", "kairos-nats-passwords")])[
        "passwords.conf"
    ]
    creds = deploy._secret_data(by_name[("Secret", "kairos-nats-credentials")])
    return files, creds


def test_the_dev_nats_server_enforces_the_identities_and_subjects(
    kustomize: Path, deploy: ModuleType, deploy_bin: Path, tmp_path: Path
) -> None:
    """The rendered configuration run by a real nats-server (on loopback): no client without
    credentials, only inference publishes signals, execution reads them and publishes nothing."""
    import nats
    from nats.errors import Error as NatsError

    from kairos.stack.loopback import free_port, wait_for_port
    from kairos.stack.natsfence import fence

    files, creds = _dev_nats_files(render(kustomize, "dev"), deploy)
    port, http = free_port(), free_port()
    conf = (
        files["nats.conf"]
        .replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{port}")
        .replace("http: 0.0.0.0:8222", f"http: 127.0.0.1:{http}")
        .replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}")
    )
    assert conf != files["nats.conf"]
    for name, text in {**files, "nats.conf": conf}.items():
        (tmp_path / name).write_text(text)
    server = subprocess.Popen(
        [str(deploy_bin / "nats-server"), "-c", str(tmp_path / "nats.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, server)
        url = f"nats://127.0.0.1:{port}"

        def login(identity: str) -> dict[str, str]:
            user, _, password = creds[identity].strip().partition(":")
            return {"user": user, "password": password}

        async def scenario() -> tuple[str, list[bytes], dict[str, list[str]]]:
            try:
                anon = await nats.connect(url, connect_timeout=3, allow_reconnect=False)
                await anon.close()
                refused = ""
            except (NatsError, OSError, TimeoutError) as e:
                refused = str(e) or type(e).__name__
            errors: dict[str, list[str]] = {}

            async def client(identity: str) -> Any:
                async def on_error(e: Exception) -> None:
                    errors.setdefault(identity, []).append(str(e))

                return await nats.connect(
                    url, connect_timeout=3, allow_reconnect=False, error_cb=on_error, **login(identity)
                )

            got: list[bytes] = []
            reader = await client("execution")
            sub = await reader.subscribe("kairos.signal.>")
            await fence(reader, 3)
            for identity in ("inference", "collector", "execution"):
                nc = await client(identity)
                await nc.publish("kairos.signal.EURUSD", identity.encode())
                await fence(nc, 3)
                deadline = asyncio.get_running_loop().time() + 2
                while identity != "inference" and not errors.get(identity):
                    assert asyncio.get_running_loop().time() < deadline, f"{identity}: no permissions error"
                    await asyncio.sleep(0.02)
                await nc.close()
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.5)
                    got.append(msg.data)
            except TimeoutError:
                pass
            await reader.close()
            return refused, got, errors

        refused, got, errors = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "authorization" in refused.lower(), refused
    assert got == [b"inference"], got
    for identity in ("collector", "execution"):
        assert any("permissions violation" in e.lower() for e in errors[identity]), errors
    assert "inference" not in errors, errors
