"""Checks and generators for the deployment files (deploy/, docker-compose*.yml, docs/operations.md).

Subcommands (run by `make lint` and `make config-docs`; python/tests/deploy imports the functions):

- ``check-dashboards``: every Grafana dashboard is valid JSON with the structure Grafana provisions
  (unique uid and panel ids, the provisioned datasource) and every query parses as PromQL (each
  expression goes through ``promtool check rules`` as a recording rule).
- ``check-env``: every variable the compose files interpolate is documented in .env.example, and
  .env.example holds nothing the compose files do not use.
- ``metrics``: the metric names the dashboards and alert rules use, one per line.
- ``static-metrics SRC...``: which of those names appear in the services' source trees (a static
  cross-check; the authoritative one scrapes the running services: python/tests/deploy).
- ``config-docs``: regenerate the configuration reference in docs/operations.md from each service's
  ``--help`` (the help text is generated from the typed config structs).
- ``check-k8s-nats RENDERED.yaml``: the NATS authentication of a rendered Kubernetes overlay (ADR 0064):
  every Kairos workload reads its own NATS identity from Secret kairos-nats-credentials; where the
  overlay runs NATS itself, the server runs deploy/nats's nats.conf and auth.conf with passwords.conf
  from a Secret, ``nats-server -t`` accepts the rendered files, and each identity's password matches.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources"
RULES = REPO / "deploy" / "prometheus" / "rules"
COMPOSE_FILES = (REPO / "docker-compose.yml", REPO / "docker-compose.dev.yml")
ENV_EXAMPLE = REPO / ".env.example"
OPERATIONS_MD = REPO / "docs" / "operations.md"

# PromQL words that look like metric names but are not (keywords, aggregation modifiers, literals).
_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2", "start", "end", "le",
}  # fmt: skip
_GRAFANA_RANGE_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


class CheckError(Exception):
    """A deployment file is wrong; the message names the file and the element."""


# --- PromQL ----------------------------------------------------------------------------------------


def _strip_clauses(expr: str) -> str:
    """Removes string literals, label matchers, grouping clauses and range selectors."""
    out = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    out = re.sub(r"\{[^{}]*\}", " ", out)
    out = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", out)
    out = re.sub(r"\[[^\[\]]*\]", " ", out)
    return re.sub(r"#[^\n]*", " ", out)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels and literals excluded)."""
    for var, value in _GRAFANA_RANGE_VARS.items():
        expr = expr.replace(var, value)
    text = _strip_clauses(expr)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        # A duration such as 5m or a number is not an identifier start; `e` of 1e3 is filtered by
        # the look-behind on digits below.
        if text[max(0, m.start() - 1) : m.start()].isdigit():
            continue
        names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A Grafana query made plain PromQL: range variables get a duration, other variables a value."""
    for var, value in _GRAFANA_RANGE_VARS.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", "x", expr)


# --- Dashboards ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL query of a dashboard panel or template variable."""

    source: str  # "<file> panel <id> '<title>' ref <refId>"
    expr: str


def _panels(dashboard: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def provisioned_datasource_uids() -> set[str]:
    uids = set()
    for path in sorted(DATASOURCES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for ds in doc.get("datasources", []):
            uids.add(ds["uid"])
    return uids


def dashboard_queries(path: Path, datasource_uids: set[str] | None = None) -> list[Query]:
    """Validates one dashboard file and returns its queries. Raises CheckError naming the problem."""
    try:
        dash = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(dash, dict):
        raise CheckError(f"{path}: a dashboard is a JSON object")
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in dash:
            raise CheckError(f"{path}: missing top-level {key!r}")
    if dash.get("id") is not None:
        raise CheckError(f'{path}: provisioned dashboards must have "id": null (got {dash["id"]!r})')
    uids = provisioned_datasource_uids() if datasource_uids is None else datasource_uids
    template_names = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    queries: list[Query] = []
    seen_ids: set[int] = set()
    for panel in _panels(dash):
        pid, title = panel.get("id"), panel.get("title", "")
        where = f"{path.name} panel {pid} {title!r}"
        if not isinstance(pid, int) or pid in seen_ids:
            raise CheckError(f"{path}: panel {title!r} has a missing or duplicate id {pid!r}")
        seen_ids.add(pid)
        if "gridPos" not in panel:
            raise CheckError(f"{where}: no gridPos")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        if not targets:
            raise CheckError(f"{where}: no queries")
        for target in targets:
            ds = target.get("datasource") or panel.get("datasource")
            _check_datasource(ds, uids, template_names, where)
            expr = target.get("expr", "")
            if not expr.strip():
                raise CheckError(f"{where} ref {target.get('refId')}: empty expr")
            queries.append(Query(f"{where} ref {target.get('refId')}", expr))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        where = f"{path.name} variable {var.get('name')}"
        _check_datasource(var.get("datasource"), uids, template_names, where)
        q = var.get("query")
        text = q.get("query", "") if isinstance(q, dict) else str(q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", text)
        if m:
            queries.append(Query(f"{path.name} variable {var.get('name')}", m.group(1)))
        elif re.fullmatch(r"\s*query_result\((.*)\)\s*", text):
            queries.append(Query(f"{path.name} variable {var.get('name')}", text.strip()[13:-1]))
        else:
            raise CheckError(f"{path.name} variable {var.get('name')}: unsupported query {text!r}")
    return queries


def _check_datasource(ds: Any, uids: set[str], template_names: set[Any], where: str) -> None:
    if not isinstance(ds, dict) or ds.get("type") != "prometheus":
        raise CheckError(f"{where}: datasource must be {{'type': 'prometheus', 'uid': ...}}, got {ds!r}")
    uid = ds.get("uid", "")
    if uid.startswith("$") and uid.strip("${}") in template_names:
        return
    if uid not in uids:
        raise CheckError(f"{where}: datasource uid {uid!r} is not provisioned ({sorted(uids)})")


def check_promql_with_promtool(queries: Sequence[Query]) -> None:
    """Parses every query with promtool by wrapping it in a recording rule."""
    if not queries:
        return
    rules = [
        {"record": f"kairos_check:q{i}", "expr": grafana_to_promql(q.expr)} for i, q in enumerate(queries)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard-queries.yml"
        doc = {"groups": [{"name": "dashboards", "rules": rules}]}
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        detail = proc.stdout + proc.stderr
        listing = "\n".join(f"  q{i}: {q.source}: {q.expr}" for i, q in enumerate(queries))
        raise CheckError(f"promtool rejects dashboard queries:\n{detail}\nqueries:\n{listing}")


# --- Rules -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    source: str
    name: str  # alert name or recorded metric
    kind: str  # "alert" or "record"
    expr: str


def rules(paths: Iterable[Path] | None = None) -> list[Rule]:
    out = []
    for path in sorted(paths if paths is not None else RULES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in doc["groups"]:
            for r in group["rules"]:
                kind = "alert" if "alert" in r else "record"
                out.append(Rule(f"{path.name} group {group['name']}", r[kind], kind, r["expr"]))
    return out


def required_metrics() -> dict[str, list[str]]:
    """Every metric name the dashboards and alert rules read, mapped to where it is used.

    Names produced by recording rules (``kairos:...``) and Prometheus' own ``up`` are left out: no
    service exports them.
    """
    used: dict[str, list[str]] = {}
    all_rules = rules()
    recorded = {r.name for r in all_rules if r.kind == "record"}
    for r in all_rules:
        for name in promql_metric_names(r.expr):
            used.setdefault(name, []).append(f"{r.source} {r.kind} {r.name}")
    uids = provisioned_datasource_uids()
    for path in sorted(DASHBOARDS.glob("*.json")):
        for q in dashboard_queries(path, uids):
            for name in promql_metric_names(q.expr):
                used.setdefault(name, []).append(q.source)
    for name in [*recorded, "up"]:
        used.pop(name, None)
    return dict(sorted(used.items()))


def exported_family(sample_name: str) -> str:
    """The metric family a sample name belongs to (histogram and summary series share one)."""
    return re.sub(r"_(bucket|sum|count)$", "", sample_name)


# --- Static source scan ----------------------------------------------------------------------------


def source_metric_names(roots: Iterable[Path]) -> dict[str, str]:
    """Metric-looking string literals ("kairos_...") in Go and Python source, mapped to a file."""
    found: dict[str, str] = {}
    for root in roots:
        for path in sorted([*root.rglob("*.go"), *root.rglob("*.py")]):
            if "/v1/" in str(path) or "/tests/" in str(path) or path.name.endswith("_test.go"):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for m in re.finditer(r"[\"'](kairos_[a-z0-9_]+)[\"']", text):
                found.setdefault(m.group(1), str(path))
    return found


def static_mismatches(required: Iterable[str], exported: Iterable[str]) -> list[str]:
    families = set(exported)
    return sorted(n for n in required if n not in families and exported_family(n) not in families)


# --- Environment documentation ---------------------------------------------------------------------


def compose_variables(paths: Iterable[Path] = COMPOSE_FILES) -> set[str]:
    names = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        text = text.replace("$$", "")
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
        names |= set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    return names


def env_example_variables(path: Path = ENV_EXAMPLE) -> dict[str, int]:
    """Variables set in .env.example, each with its line; every one must follow a comment."""
    out: dict[str, int] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", lines[j]):
            j -= 1
        if j < 0 or not lines[j].startswith("#"):
            raise CheckError(f"{path}:{i + 1}: {m.group(1)} has no comment above it")
        out[m.group(1)] = i + 1
    return out


def check_env(compose_files: Iterable[Path] = COMPOSE_FILES, env_example: Path = ENV_EXAMPLE) -> None:
    used, documented = compose_variables(compose_files), env_example_variables(env_example)
    missing = sorted(used - documented.keys())
    unused = sorted(documented.keys() - used)
    problems = [f"{v}: used in the compose files, not in .env.example" for v in missing]
    problems += [f"{env_example.name}:{documented[v]}: {v} is not used by any compose file" for v in unused]
    if problems:
        raise CheckError("\n".join(problems))


# --- Configuration reference -----------------------------------------------------------------------

BEGIN = "<!-- BEGIN GENERATED CONFIG REFERENCE (tools/deploy/kairos_deploy.py config-docs) -->"
END = "<!-- END GENERATED CONFIG REFERENCE -->"


@dataclass(frozen=True)
class Option:
    flag: str
    env: str
    default: str
    help: str


def parse_help(text: str, env_prefix: str) -> list[Option]:
    """Options from a Go `flag` or Python argparse --help text.

    Go's flag package prints "  -name type" then the indented usage ending in "(default x)"; argparse
    prints "  --name NAME" then the indented help. The environment variable is the prefix plus the
    flag in upper snake case, which both kinds of service follow (see their config packages).
    """
    opts: list[Option] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s{1,4}(-{1,2})([a-z0-9][a-z0-9-]*)(?:[ =](\S+))?(?:\s{2,}(.*))?$", lines[i])
        if not m or m.group(2) == "help" or m.group(2) == "h":
            i += 1
            continue
        name, value_type, desc = m.group(2), m.group(3), [m.group(4) or ""]
        i += 1
        while i < len(lines) and re.match(r"^\s{5,}\S", lines[i]) and not re.match(r"^\s{1,4}-", lines[i]):
            desc.append(lines[i].strip())
            i += 1
        help_text = " ".join(d for d in desc if d).strip()
        default = ""
        dm = re.search(r"\(default:? ([^)]*)\)\s*$", help_text)
        if dm:
            default, help_text = dm.group(1).strip(), help_text[: dm.start()].strip()
        env = env_prefix + name.replace("-", "_").replace(".", "_").upper()
        env_m = re.search(r"\((?:env )?(" + re.escape(env_prefix) + r"[A-Z0-9_]+)\)", help_text)
        if env_m:
            env = env_m.group(1)
            help_text = (help_text[: env_m.start()] + help_text[env_m.end() :]).strip()
        if m.group(1) == "-" and value_type is None and not default:
            default = "false"  # Go's flag package prints no type and no default for a false bool
        opts.append(Option(f"--{name}" if m.group(1) == "--" else f"-{name}", env, default, help_text))
    return opts


@dataclass(frozen=True)
class Service:
    name: str
    env_prefix: str
    command: list[str]  # prints --help, or (json=True) the config fields as JSON
    present: Path  # the source that must exist
    json: bool = False


# Reads the inference server's typed config (a frozen dataclass whose fields carry their help) in the
# project's interpreter through its settings(), the counterpart of the Go services' envflag Settings(),
# so defaults come from the struct itself rather than from --help text.
_PY_CONFIG_FIELDS = """
import json
from kairos.inference.config import settings
print(json.dumps(settings()))
"""
_CONSOLE_CONFIG_FIELDS = _PY_CONFIG_FIELDS.replace("kairos.inference.config", "kairos.console.config")


def services(bin_dir: Path) -> list[Service]:
    return [
        Service(
            "kairos-collector",
            "KAIROS_COLLECTOR_",
            [str(bin_dir / "kairos-collector"), "-help"],
            REPO / "go/collector/cmd/kairos-collector",
        ),
        Service(
            "kairos-inference",
            "KAIROS_INFERENCE_",
            [sys.executable, "-c", _PY_CONFIG_FIELDS],
            REPO / "python/kairos/inference/config.py",
            json=True,
        ),
        Service(
            "kairos-console",
            "KAIROS_CONSOLE_",
            [sys.executable, "-c", _CONSOLE_CONFIG_FIELDS],
            REPO / "python/kairos/console/config.py",
            json=True,
        ),
        Service(
            "kairos-execution",
            "KAIROS_EXECUTION_",
            [str(bin_dir / "kairos-execution"), "serve", "-help"],
            REPO / "go/execution/cmd/kairos-execution",
        ),
        Service(
            "kairos-healthprobe",
            "KAIROS_HEALTHPROBE_",
            [str(bin_dir / "kairos-healthprobe"), "-help"],
            REPO / "tools/deploy/cmd/kairos-healthprobe",
        ),
    ]


def build_go_binaries(bin_dir: Path) -> None:
    """Builds the Go services in the workspace (go.work: their go.sum files rely on go.work.sum) and
    the health probe in its own tools module."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for module, pkg, gowork in (
        ("go/collector", "./cmd/kairos-collector", None),
        ("go/execution", "./cmd/kairos-execution", None),
        ("tools/deploy", "./cmd/kairos-healthprobe", "off"),
    ):
        if (REPO / module / pkg).is_dir():
            env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
            if gowork:
                env["GOWORK"] = gowork
            cmd = ["go", "build", "-o", f"{bin_dir}/", pkg]
            subprocess.run(cmd, cwd=REPO / module, env=env, check=True)


def read_options(svc: Service) -> list[Option]:
    """A service's options, from its --help or (json) its config struct."""
    proc = subprocess.run(svc.command, capture_output=True, text=True, timeout=60)
    text = proc.stdout + proc.stderr
    if svc.json:
        if proc.returncode != 0:
            raise CheckError(f"{svc.name}: reading its config failed:\n{text}")
        opts = [Option(**o) for o in json.loads(proc.stdout)]
    else:
        opts = parse_help(text, svc.env_prefix)
    if not opts:
        raise CheckError(f"{svc.name}: no options found in its --help output:\n{text}")
    return opts


def render_config_reference(bin_dir: Path) -> str:
    parts = [BEGIN, ""]
    for svc in services(bin_dir):
        parts.append(f"### {svc.name}")
        parts.append("")
        opts = read_options(svc)
        parts.append("| Flag | Environment variable | Default | Meaning |")
        parts.append("|---|---|---|---|")
        for o in opts:
            default = f"`{o.default}`" if o.default else ""
            meaning = o.help.replace("|", "\\|")
            parts.append(f"| `{o.flag}` | `{o.env}` | {default} | {meaning} |")
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


METRICS_BEGIN = "<!-- BEGIN GENERATED METRICS (tools/deploy/kairos_deploy.py config-docs) -->"
METRICS_END = "<!-- END GENERATED METRICS -->"


def render_metrics_reference() -> str:
    """The metrics the dashboards and alert rules read, with the service and the first users."""
    rows = [METRICS_BEGIN, "", "| Metric | Service | Used by |", "|---|---|---|"]
    for name, where in required_metrics().items():
        service = name.split("_")[1] if name.startswith("kairos_") else "prometheus"
        if service == "bridge":  # go/bridgelink: both services export it, one channel label each
            service = "collector, execution"
        users = sorted({w.split(" group ")[-1] if " group " in w else w.split(" ref ")[0] for w in where})
        shown = "; ".join(users[:3]) + (f" (+{len(users) - 3})" if len(users) > 3 else "")
        rows.append(f"| `{name}` | {service} | {shown.replace('|', '/')} |")
    rows += ["", METRICS_END]
    return "\n".join(rows)


def _replace_block(doc: str, begin: str, end: str, body: str) -> str:
    if begin not in doc or end not in doc:
        raise CheckError(f"{OPERATIONS_MD}: the markers {begin!r} / {end!r} are missing")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    return head + body + tail


def write_config_reference(bin_dir: Path, check: bool = False) -> bool:
    """Rewrites the generated blocks of docs/operations.md; returns True when they changed."""
    doc = OPERATIONS_MD.read_text(encoding="utf-8")
    new = _replace_block(doc, BEGIN, END, render_config_reference(bin_dir))
    new = _replace_block(new, METRICS_BEGIN, METRICS_END, render_metrics_reference())
    changed = new != doc
    if changed and not check:
        OPERATIONS_MD.write_text(new, encoding="utf-8")
    return changed


# --- CLI -------------------------------------------------------------------------------------------


# The NATS identity each Kairos workload (by app.kubernetes.io/component) must run as, and where
# its password file is named (ADR 0064).
K8S_NATS_IDENTITIES = {
    "collector": ("KAIROS_COLLECTOR_NATS_CREDS", "collector"),
    "inference": ("KAIROS_INFERENCE_NATS_CREDS", "inference"),
    "execution": ("KAIROS_EXECUTION_NATS_CREDS", "execution"),
    "nats-streams": ("NATS_PASSWORD_FILE", "streams"),
    "console": ("KAIROS_CONSOLE_NATS_CREDS", "observer"),
    "recorder": ("KAIROS_RECORDER_NATS_CREDS", "recorder"),
}
K8S_NATS_CREDENTIALS = "kairos-nats-credentials"


def _k8s_base_name(name: str) -> str:
    """A generated ConfigMap's or Secret's name without kustomize's hash suffix."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def _secret_data(doc: dict[str, Any]) -> dict[str, str]:
    import base64

    out = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    out.update(doc.get("stringData") or {})
    return out


def check_k8s_nats(docs: Sequence[dict[str, Any]], nats_server: str = "nats-server") -> list[str]:
    """Checks a rendered overlay's NATS authentication (see the module doc); returns what it checked."""
    checked: list[str] = []
    workloads = [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet", "Job")]
    for w in workloads:
        comp = w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component", "")
        if comp not in K8S_NATS_IDENTITIES:
            continue
        var, identity = K8S_NATS_IDENTITIES[comp]
        pod = w["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        where = f"{w['kind']} {w['metadata']['name']}"
        path = env.get(var)
        if not path:
            raise CheckError(f"{where}: no {var}: it would connect to NATS without credentials")
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        found = False
        for v in pod.get("volumes", []):
            sec = v.get("secret")
            if (
                not sec
                or _k8s_base_name(sec["secretName"]) != K8S_NATS_CREDENTIALS
                or v["name"] not in mounts
            ):
                continue
            items = {i["key"]: i["path"] for i in sec.get("items", [])}
            if set(items) != {identity}:
                raise CheckError(f"{where}: mounts NATS identities {sorted(items)}, want only {identity!r}")
            found = path == f"{mounts[v['name']].rstrip('/')}/{items[identity]}"
        if not found:
            raise CheckError(
                f"{where}: {var}={path} is not its {identity!r} key of Secret {K8S_NATS_CREDENTIALS}"
            )
        checked.append(f"{where}: NATS identity {identity}")
    servers = [d for d in docs if d.get("kind") == "StatefulSet" and d["metadata"]["name"] == "nats"]
    if not servers:
        return checked
    (srv,) = servers
    pod = srv["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    if c.get("args") != ["--config", "/etc/nats/nats.conf"]:
        raise CheckError(f"the NATS server must run /etc/nats/nats.conf, got args {c.get('args')}")
    by_name = {(d["kind"], _k8s_base_name(d["metadata"]["name"])): d for d in docs}
    files: dict[str, str] = {}
    for v in pod.get("volumes", []):
        for src in (v.get("projected") or {}).get("sources", []):
            if "configMap" in src:
                cm = by_name[("ConfigMap", _k8s_base_name(src["configMap"]["name"]))]
                files.update(cm.get("data") or {})
            if "secret" in src:
                data = _secret_data(by_name[("Secret", _k8s_base_name(src["secret"]["name"]))])
                for item in src["secret"].get("items", [{"key": k, "path": k} for k in data]):
                    files[item["path"]] = data[item["key"]]
    for name in ("nats.conf", "auth.conf", "passwords.conf"):
        if name not in files:
            raise CheckError(f"the NATS server's /etc/nats has no {name}")
    for name in ("nats.conf", "auth.conf"):
        if files[name] != (REPO / "deploy" / "nats" / name).read_text():
            raise CheckError(f"the NATS server's {name} differs from deploy/nats/{name}: one definition")
    with tempfile.TemporaryDirectory() as d:
        for name, text in files.items():
            Path(d, name).write_text(text)
        out = subprocess.run(
            [nats_server, "-t", "-c", str(Path(d, "nats.conf"))], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise CheckError(f"nats-server -t refuses the rendered configuration: {out.stdout}{out.stderr}")
    passwords = dict(
        re.findall(r'^(KAIROS_NATS_[A-Z]+_PASSWORD):\s*"([^"]*)"', files["passwords.conf"], re.M)
    )
    creds = _secret_data(by_name[("Secret", K8S_NATS_CREDENTIALS)])
    for identity, line in creds.items():
        user, _, password = line.strip().partition(":")
        want = passwords.get(f"KAIROS_NATS_{identity.upper()}_PASSWORD")
        if user != identity or password != want:
            raise CheckError(
                f"Secret {K8S_NATS_CREDENTIALS} key {identity}: not the server's {identity} user and password"
            )
    checked.append(
        f"NATS server: deploy/nats config, {len(passwords)} passwords, {len(creds)} identities match"
    )
    return checked


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kairos_deploy.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check-dashboards", help="validate Grafana dashboards and their PromQL")
    sub.add_parser("check-env", help="compose variables vs .env.example")
    sub.add_parser("metrics", help="metric names used by dashboards and alert rules")
    sm = sub.add_parser("static-metrics", help="compare used metric names with the services' source")
    sm.add_argument("roots", nargs="+", type=Path)
    cd = sub.add_parser("config-docs", help="regenerate the configuration reference in docs/operations.md")
    cd.add_argument("--bin-dir", type=Path, default=REPO / "build" / "deploy" / "bin")
    cd.add_argument("--check", action="store_true", help="fail if the reference is out of date")
    kn = sub.add_parser("check-k8s-nats", help="NATS authentication of a rendered Kubernetes overlay")
    kn.add_argument("rendered", type=Path)
    args = p.parse_args(argv)
    try:
        if args.cmd == "check-dashboards":
            uids = provisioned_datasource_uids()
            paths = sorted(DASHBOARDS.glob("*.json"))
            if not paths:
                raise CheckError(f"{DASHBOARDS}: no dashboards")
            queries = [q for path in paths for q in dashboard_queries(path, uids)]
            check_promql_with_promtool(queries)
            print(f"dashboards: {len(paths)} files, {len(queries)} queries ok")
        elif args.cmd == "check-env":
            check_env()
            print(f"env: {len(compose_variables())} compose variables documented in .env.example")
        elif args.cmd == "metrics":
            for name, where in required_metrics().items():
                print(f"{name}\t{where[0]}" + (f" (+{len(where) - 1})" if len(where) > 1 else ""))
        elif args.cmd == "static-metrics":
            exported = source_metric_names(args.roots)
            missing = static_mismatches(required_metrics(), exported)
            for name in missing:
                print(f"MISSING {name}\tused by {required_metrics()[name][0]}")
            print(f"static-metrics: {len(required_metrics()) - len(missing)} found, {len(missing)} missing")
            return 1 if missing else 0
        elif args.cmd == "config-docs":
            build_go_binaries(args.bin_dir)
            changed = write_config_reference(args.bin_dir, check=args.check)
            if args.check and changed:
                print("docs/operations.md: configuration reference is out of date; run `make config-docs`")
                return 1
            print("docs/operations.md: configuration reference " + ("rewritten" if changed else "up to date"))
        elif args.cmd == "check-k8s-nats":
            docs = [d for d in yaml.safe_load_all(args.rendered.read_text()) if d]
            for line in check_k8s_nats(docs):
                print(f"{args.rendered.name}: {line}")
    except CheckError as e:
        print(f"{args.cmd}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
