"""`kairos`: the umbrella command users run.

    kairos up        start collector (embedded NATS), inference and execution (paper venue) locally
    kairos down      stop what `kairos up` started
    kairos status    health, model versions, key counters
    kairos replay    replay a data file (or a built-in sample) through the bridge library
    kairos stream    print live ticks, bars or predictions for a symbol (typed client SDK)
    kairos history   download tick or bar history from the MT5 terminal through the bridge (Parquet)
    kairos kill      the execution kill switch: halt, cancel working orders, optionally flatten
    kairos demo      the main job: all of the above on embedded defaults, with a live view and a report
    kairos models    model lifecycle in the registry: list, promote, rollback

Exit codes: 0 success, 1 usage or runtime error, 2 bad input data (with --strict), 3 a service died.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kairos.stack import processes, services

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
console = Console()
err = Console(stderr=True)

EXIT_ERROR = 1
EXIT_BAD_DATA = 2
EXIT_SERVICE_DIED = 3

RunDir = Annotated[Path, typer.Option(help="Where logs, pids and the token live.")]


class Venue(StrEnum):
    """Where `kairos up`'s execution service sends orders."""

    paper = "paper"
    mt5 = "mt5"


@app.command()
def up(
    model: Annotated[
        str, typer.Option(help="models:/<name>@<alias> or a local .onnx (card beside it).")
    ] = "",
    run_dir: RunDir = services.STATE_DIR / "run",
    record: Annotated[
        bool, typer.Option(help="Also start the recorder: ticks and bars kept as Parquet (ADR 0084).")
    ] = True,
    record_dir: Annotated[
        Path | None,
        typer.Option(help="Recorded dataset root (default $KAIROS_RECORD_DIR or .kairos/recorded)."),
    ] = None,
    shadow_models: Annotated[
        str,
        typer.Option(
            help="Comma-separated challengers the inference server evaluates in shadow on the same bars "
            "(e.g. models:/kairos-eurusd@challenger): paper figures and the promotion test, never traded "
            "(default: $KAIROS_INFERENCE_SHADOW_MODELS)."
        ),
    ] = "",
    tester: Annotated[
        bool,
        typer.Option(
            help="A stack for an EA in the MT5 Strategy Tester (ADR 0095): MT5 venue, the tester's "
            "virtual time, no recorder (tester ticks are not market data to train on)."
        ),
    ] = False,
    venue: Annotated[
        Venue,
        typer.Option(
            help="Where orders go: paper (the paper venue, on the terminal's quotes) or mt5 (back to the "
            "terminal through the EA's execution connection, InpExecution, port 7600; docs/mt5.md)."
        ),
    ] = Venue.paper,
    inference_workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=services.MAX_INFERENCE_WORKERS,
            envvar="KAIROS_INFERENCE_WORKERS",
            help="Inference server processes, one per core to spare (ADR 0115): each also serves on its "
            "own address (port 7511 + i), and the collector spreads the symbols over those.",
        ),
    ] = 1,
    cpu_latency_us: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=1_999_999_999,
            envvar="KAIROS_CPU_LATENCY_US",
            help="Hold every CPU's wake-up latency at most this many µs while the stack runs (ADR 0117; "
            "PM QoS through /dev/cpu_dma_latency, needs root): 0 makes idle CPUs poll instead of "
            "sleep, which cuts each hop's wake-up (~150 µs to ~10 µs on a VM) and spends the idle CPU. "
            "Default: the host as it is.",
        ),
    ] = None,
    cpu_affinity: Annotated[
        list[str] | None,
        typer.Option(
            envvar="KAIROS_CPU_AFFINITY",
            help="SERVICE[,SERVICE...]=CPUS (repeatable; CPUS as taskset takes them; * = every service "
            "not named): the CPUs each service may run on (ADR 0117). Default (ADR 0122): the "
            "inference workers alone on the last CPUs, as many as there are workers, every other "
            "service on the rest (inference=1 and *=0 on 2 CPUs), when at least one CPU is left for them; "
            "--cpu-affinity none lets the kernel place every service.",
        ),
    ] = None,
    keep_warm: Annotated[
        str,
        typer.Option(
            envvar="KAIROS_INFERENCE_KEEP_WARM",
            help="While the inference server has had no request for this long, it rehearses a recent "
            "request's whole path at this interval on a private state, so the next tick finds it in "
            "cache (ADR 0118, on by default since ADR 0121; a Go duration; 0 disables). Costs 7-11% of "
            "a core per inference worker while idle on a VM.",
        ),
    ] = services.DEFAULT_KEEP_WARM,
    idle_spin: Annotated[
        bool,
        typer.Option(
            "--idle-spin",
            envvar="KAIROS_INFERENCE_IDLE_SPIN",
            help="Keep each inference worker's CPU from going idle: a thread under SCHED_IDLE spins "
            "whenever nothing else there wants the CPU, so a tick never finds it halted (ADR 0123; no "
            "root needed). Costs the whole CPU, always; pays with the default CPU layout, where the "
            "workers have CPUs of their own.",
        ),
    ] = False,
) -> None:
    """Start the services as background processes (logs in RUN_DIR/<service>.log), health-checked."""
    from kairos.stack.demo import resolve_model

    if tester:
        record = False

    try:
        affinity = services.resolve_cpu_affinity(cpu_affinity, inference_workers)
        keep_warm = services.check_keep_warm(keep_warm)
    except ValueError as e:
        err.print(str(e))
        raise typer.Exit(EXIT_ERROR) from None
    if processes.recorded_services(run_dir) and any(s.alive() for s in processes.recorded_services(run_dir)):
        err.print(f"a stack is already running (see {run_dir / processes.STATE_FILE}); `kairos down` first")
        raise typer.Exit(EXIT_ERROR)
    if model and Path(model).exists():
        model = str(Path(model).resolve())  # status and logs then say exactly which file serves
    settings = services.StackSettings(
        run_dir=run_dir,
        model=model,
        execution_args=services.up_execution_args(tester, venue.value),
        collector_args=services.TESTER_COLLECTOR_ARGS if tester else (),
        inference_workers=inference_workers,
        cpu_latency_us=cpu_latency_us,
        cpu_affinity=affinity,
        inference_keep_warm=keep_warm,
        inference_idle_spin=idle_spin,
    )
    shadows = [m.strip() for m in shadow_models.split(",") if m.strip()]
    settings.shadow_models = tuple(str(Path(m).resolve()) if Path(m).exists() else m for m in shadows)
    settings.model = resolve_model(settings, console)
    binaries = services.build_go_binaries(settings.bin_dir)
    stack = processes.Stack(run_dir)
    try:
        extra = [services.recorder_spec(settings, record_dir)] if record else []
        for spec in [*services.specs(settings, binaries), services.console_spec(settings), *extra]:
            svc = stack.start(spec)
            stack.wait_ready(svc)
            where = spec.grpc_addr or spec.ready_url.removesuffix("/healthz")
            cpus = f"  cpus {spec.cpus}" if spec.cpus else ""
            if spec.name == "inference" and settings.inference_idle_spin:
                cpus += "  idle-spin"  # those CPUs are busy while the stack runs (ADR 0123)
            console.print(f"[green]✓[/] {spec.name:<10} pid {svc.pid:<7} {where}{cpus}  log {svc.log_path}")
    except processes.ServiceDied as exc:
        err.print(f"[red]{exc}[/]")
        stack.stop()
        raise typer.Exit(EXIT_SERVICE_DIED) from exc
    console.print(
        f"console: {services.console_url(settings)} "
        f"(log in with the execution token in {run_dir / 'token'}); stop with `kairos down`",
        highlight=False,
    )
    # The EA needs the key as its BridgeKey input; the terminal usually runs on another machine.
    console.print(
        f"bridge key (the EA's BridgeKey input) in {settings.bridge_key_file}:\n"
        f"  {settings.ensure_bridge_key()}",
        highlight=False,
    )


@app.command()
def down(run_dir: RunDir = services.STATE_DIR / "run") -> None:
    """Stop every service `kairos up` started."""
    stopped = list(processes.stop_recorded(run_dir))
    if not stopped:
        console.print("nothing is running")
    for name, what in stopped:
        console.print(f"{name}: {what}")


STATUS_METRICS = re.compile(
    r"^(kairos_[a-z_]*(ticks|bars|predictions|orders|fills|denials|rejected|dropped)[a-z_]*_total)"
    r"(\{[^}]*\})? (\S+)$"
)


@app.command()
def status(run_dir: RunDir = services.STATE_DIR / "run") -> None:
    """Health, model versions and counters of the running stack."""
    recorded = processes.recorded_services(run_dir)
    if not recorded:
        console.print("nothing is running (`kairos up` starts the stack)")
        raise typer.Exit(EXIT_ERROR)
    table = Table("service", "pid", "process", "health", "address")
    for svc in recorded:
        table.add_row(
            svc.name,
            str(svc.pid),
            "running" if svc.alive() else "[red]gone[/]",
            processes.service_health(svc).name,
            svc.grpc_addr or svc.ready_url.removesuffix("/healthz"),
        )
    console.print(table)
    inference = next((s for s in recorded if s.name == "inference"), None)
    if inference is not None:
        from kairos.stack import credentials

        _print_models(inference.grpc_addr, credentials.read_token(run_dir, "inference"))
    counters = Table("metric", "labels", "value")
    for svc in recorded:
        for name, labels, value in _scrape(svc.metrics_url):
            counters.add_row(name, labels, value)
    console.print(counters)


def _print_models(addr: str, token: str) -> None:
    """The serving model and its shadow challengers (GetModelStatus): gate verdicts, then the live
    paper figures and drift, one row per model."""
    import grpc

    from kairos.stack.serving import serving_models, shadow_text

    try:
        models = serving_models(addr, token)
    except grpc.RpcError as exc:
        err.print(f"inference GetModelStatus: {exc.code().name} {exc.details()}")
        return
    table = Table(
        "role",
        "model",
        "version",
        "state",
        "gate",
        "Sharpe (interval)",
        "DSR / trials",
        "source",
        "predictions",
    )
    for m in models:
        table.add_row(
            m.role or "-",
            m.name,
            m.version,
            m.state,
            f"[{GATE_STYLES[m.gate]}]{m.gate}[/]" + (" [red]EXPIRED[/]" if m.expired else ""),
            m.sharpe_text,
            f"{m.deflated_sharpe:.3f} / {m.n_trials}" if m.validated else "-",
            m.source,
            f"{m.predictions:,}",
        )
    console.print(table)
    live = Table(
        "role", "model", "bars", "net", "Sharpe", "turnover/bar", "trades", "drift",
        title="Live, on paper since loaded, and drift",
    )  # fmt: skip
    for m in models:
        live.add_row(
            m.role or "-",
            f"{m.name} {m.version}",
            *shadow_text(m.shadow),
            m.drift.text if m.drift is not None else "- (no training distribution in the card)",
        )
    console.print(live)
    if not any(m.shadow for m in models):
        console.print("shadow evaluation is off (kairos-inference --shadow-models): no paper figures")
    for m in models:
        p = m.promotion
        if p is not None:  # ADR 0097: the challenger against the serving model on the same bars
            verdict = "[green]significant[/]" if p.significant else "not significant"
            console.print(
                f"promotion test {m.name} {m.version} vs serving: {p.bars:,} bars, mean difference "
                f"{p.mean_difference * 1e4:+.3f} bp/bar, p {p.p_value:.3g}: {verdict} ({p.method})",
                highlight=False,
                soft_wrap=True,
            )
    for m in models:
        if m.last_error:
            console.print(f"[red]{m.name or m.source}: last load failed:[/] {m.last_error}")
        if m.gate != "PASSED" and m.name:
            why = m.verdict or "its model card carries no gate verdict: nobody validated it"
            console.print(f"[{GATE_STYLES[m.gate]}]{m.name} {m.version} is not a validated model:[/] {why}")


GATE_STYLES = {"PASSED": "green", "FAILED": "red", "UNVALIDATED": "yellow", "FORCED": "yellow"}


def _scrape(url: str) -> list[tuple[str, str, str]]:
    if not url:
        return []
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        m = STATUS_METRICS.match(line)
        if m:
            out.append((m.group(1), m.group(3) or "", m.group(4)))
    return out


TimeColumnOpt = Annotated[
    str | None,
    typer.Option(
        help="The CSV/Parquet column holding the time, when its name is not a known one (time, timestamp, …)."
    ),
]
TimeFormatOpt = Annotated[
    str | None,
    typer.Option(help="strftime format of the time column (e.g. '%d.%m.%Y %H:%M:%S.%f'); default ISO 8601."),
]


@app.command()
def replay(
    source: Annotated[
        str,
        typer.Argument(
            help="A data file (ticks or bars; CSV, MT5 export, Parquet; may be .gz/.zst) or sample:eurusd-h1."
        ),
    ],
    symbol: Annotated[
        str | None,
        typer.Option(help="Symbol of the data; default: the one the file name states (EURUSD_….csv)."),
    ] = None,
    speed: Annotated[float, typer.Option(help="Ticks per second; 0 replays as fast as possible.")] = 0.0,
    realtime: Annotated[
        float,
        typer.Option(
            help="Pace by the data's own times at this multiple of real time (1: as recorded); 0: off."
        ),
    ] = 0.0,
    collector: Annotated[str, typer.Option(help="Collector bridge listener host:port.")] = "127.0.0.1:7400",
    strict: Annotated[bool, typer.Option(help="Stop at the first bad row instead of skipping it.")] = False,
    last: Annotated[int, typer.Option(help="Replay only the last N rows (0: all).")] = 0,
    digits: Annotated[
        int | None, typer.Option(help="Price digits of the symbol; default: the most the data prints.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Ticks per push (the EA's CopyTicks slice).")] = 100,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the collector to acknowledge the last ticks.")
    ] = 30.0,
    time_column: TimeColumnOpt = None,
    time_format: TimeFormatOpt = None,
    json_summary: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary (counts, rate, bridge counters and log).")
    ] = False,
    bridge_key_file: Annotated[
        Path, typer.Option(help="The collector's bridge key (`kairos up` writes it); absent: no key.")
    ] = services.STATE_DIR / "run" / "bridge.key",
) -> None:
    """Replay market data through the bridge library (the DLL's own C++ code) into the collector."""
    import json

    from kairos.stack import replay as rp

    if speed > 0 and realtime > 0:
        err.print("--speed (ticks per second) and --realtime (the data's own pace) exclude each other")
        raise typer.Exit(EXIT_ERROR)
    named = rp.symbol_from_name(source)
    try:
        data = rp.load(
            source,
            symbol=symbol,
            strict=strict,
            last=last,
            time_column=time_column,
            time_format=time_format,
            digits=digits,
        )
    except rp.BadData as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_BAD_DATA) from exc
    except rp.ReplayError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_ERROR) from exc
    if symbol and named and named.upper() != symbol.upper():
        err.print(f"[yellow]the file name says {named}; replaying it as {symbol} (--symbol)[/]")
    for problem in data.rejected:
        err.print(f"[yellow]skipped[/] {problem}", highlight=False)
    try:
        key = bridge_key_file.read_text().strip() if bridge_key_file.exists() else ""
        result = rp.replay(
            data,
            collector=collector,
            speed=speed,
            realtime=realtime,
            batch=batch,
            flush_timeout_s=timeout,
            bridge_key=key,
        )
    except rp.CollectorUnreachable as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_ERROR) from exc
    if json_summary:
        summary = {
            "source": data.source,
            "symbol": data.symbol,
            "digits": data.digits,
            "ticks_read": len(data.time_msc),
            "rows_skipped": len(data.rejected),
            "ticks_pushed": result.pushed,
            "ticks_sent": result.sent,
            "ticks_acked": result.acked,
            "ticks_lost": result.lost,
            "ticks_dropped": result.dropped,
            "seconds": round(result.seconds, 3),
            "ticks_per_s": round(result.ticks_per_s),
            "counters": result.counters,
            "log": result.log,
        }
        print(json.dumps(summary, indent=2))
    else:
        console.print(
            f"replayed {result.pushed:,} ticks of {data.symbol} in {result.seconds:.2f} s "
            f"({result.ticks_per_s:,.0f}/s); sent {result.sent:,}, lost {result.lost:,}, "
            f"rows skipped {len(data.rejected):,}"
        )
    if result.lost:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def stream(
    symbol: Annotated[str, typer.Argument(help="Symbol, e.g. EURUSD.")],
    what: Annotated[str, typer.Option(help="ticks, bars or predictions.")] = "ticks",
    collector: Annotated[
        str, typer.Option(help="Collector gRPC host:port (ticks, bars).")
    ] = "127.0.0.1:7401",
    nats_url: Annotated[str, typer.Option(help="NATS URL (predictions).")] = "nats://127.0.0.1:4222",
    count: Annotated[int, typer.Option(help="Stop after this many events (0: until Ctrl-C).")] = 0,
    run_dir: RunDir = services.STATE_DIR / "run",
) -> None:
    """Print live ticks, bars or predictions for SYMBOL, through the typed (betterproto2) client SDK.

    Credentials come from the run directory `kairos up` wrote: the collector's token and the NATS
    observer identity (subscribe only)."""
    from kairos.stack import credentials, streaming

    creds = credentials.Credentials(run_dir)

    if what not in ("ticks", "bars", "predictions"):
        err.print(f"--what must be ticks, bars or predictions, not {what!r}")
        raise typer.Exit(EXIT_ERROR)
    try:
        for line in streaming.events(
            symbol,
            what,
            collector=collector,
            nats_url=nats_url,
            count=count,
            collector_token=creds.token("collector"),
            nats_creds=creds.nats_creds("observer"),
        ):
            console.print(line, highlight=False)
    except KeyboardInterrupt:
        pass
    except streaming.StreamError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_ERROR) from exc


@app.command()
def history(
    symbol: Annotated[str, typer.Argument(help="Symbol as the terminal spells it, e.g. EURUSD.")],
    from_: Annotated[
        str, typer.Option("--from", help="Start, UTC (ISO 8601: 2020-01-02 or 2020-01-02T10:00).")
    ],
    to: Annotated[str, typer.Option("--to", help="End, UTC, exclusive.")],
    ticks: Annotated[bool, typer.Option("--ticks", help="Every tick (CopyTicksRange).")] = False,
    bars: Annotated[
        str, typer.Option("--bars", help="Bars of a timeframe (CopyRates): M1, M5, ..., D1.")
    ] = "",
    out: Annotated[
        Path | None, typer.Option(help="Parquet file to write (default: SYMBOL-ticks-FROM-TO.parquet).")
    ] = None,
    chunk: Annotated[
        str, typer.Option(help="Chunk length, e.g. 6h or 1d (default: 1d ticks, 30d bars).")
    ] = "",
    collector: Annotated[str, typer.Option(help="Collector gRPC host:port.")] = "127.0.0.1:7401",
    token_file: Annotated[
        Path | None, typer.Option(help="The collector's bearer token (default: the run directory's).")
    ] = None,
    run_dir: RunDir = services.STATE_DIR / "run",
) -> None:
    """Download SYMBOL's ticks or bars from the MT5 terminal through the bridge into one Parquet file.

    The collector asks the EA chunk by chunk (progress below); each chunk is kept as it completes, so
    running the same command again resumes an interrupted download. A chunk the terminal cannot
    copy, one its history does not cover (partial) and an empty range end with an error naming the
    chunk and why (exit 1)."""
    from kairos.stack import credentials
    from kairos.stack import history as hist

    if ticks == bool(bars):
        err.print("give exactly one of --ticks or --bars TIMEFRAME")
        raise typer.Exit(EXIT_ERROR)
    try:
        start, end = hist.parse_time(from_), hist.parse_time(to)
        chunk_ms = hist.parse_duration(chunk) if chunk else None
        what = f"{bars.upper()}" if bars else "ticks"
        target = out or Path(f"{symbol}-{what}-{from_}-{to}.parquet".replace(":", ""))
        token = (
            token_file.read_text().strip()
            if token_file
            else credentials.Credentials(run_dir).token("collector")
        )
        result = hist.download(
            symbol,
            start,
            end,
            out=target,
            collector=collector,
            token=token,
            timeframe=bars or None,
            chunk_ms=chunk_ms,
            progress=lambda line: console.print(line, highlight=False),
        )
    except (hist.HistoryError, OSError) as exc:
        err.print(f"[red]kairos history: {exc}[/]")
        raise typer.Exit(EXIT_ERROR) from exc
    console.print(
        f"{result.rows} {'bars' if bars else 'ticks'} of {symbol} in {result.path} "
        f"({result.chunks} chunks: {result.downloaded} downloaded, {result.resumed} resumed, "
        f"{len(result.empty)} empty){' from ' + result.terminal if result.terminal else ''}",
        highlight=False,
    )


@app.command()
def kill(
    flatten: Annotated[bool, typer.Option(help="Also close every open position at market.")] = False,
    execution: Annotated[str, typer.Option(help="Execution gRPC host:port.")] = "127.0.0.1:7601",
    run_dir: RunDir = services.STATE_DIR / "run",
    reason: Annotated[str, typer.Option(help="Why, for the journal.")] = "kill switch (kairos kill)",
) -> None:
    """Kill switch: halt trading, cancel every working order, optionally flatten positions."""
    settings = services.StackSettings(run_dir=run_dir)
    binary = services.build_go_binaries(settings.bin_dir)["kairos-execution"]
    argv = [str(binary), "kill", f"--addr={execution}", f"--reason={reason}"]
    if flatten:
        argv.append("--flatten")
    env = {"KAIROS_EXECUTION_TOKEN": settings.ensure_token()}
    code = subprocess.run(argv, env={**__import__("os").environ, **env}, check=False).returncode
    raise typer.Exit(code)


@app.command()
def demo(
    data: Annotated[
        str, typer.Option(help="What to replay: sample:eurusd-h1 or a data file.")
    ] = "sample:eurusd-h1",
    symbol: Annotated[
        str | None, typer.Option(help="Symbol of the data; default: the one its file name states.")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Model to serve; default: the registry's champion (trained if none).")
    ] = "",
    speed: Annotated[float, typer.Option(help="Replay speed in ticks per second (0: full speed).")] = 400.0,
    last: Annotated[int, typer.Option(help="Replay only the last N rows of the data (0: all).")] = 1500,
    out: Annotated[Path, typer.Option(help="Report directory.")] = services.REPO / "build" / "demo",
    live: Annotated[bool, typer.Option(help="Show the live terminal view.")] = True,
    web_console: Annotated[
        bool, typer.Option("--console/--no-console", help="Serve the operator console while the demo runs.")
    ] = True,
) -> None:
    """The main job: train if needed, start the stack, replay through the bridge, watch, report, stop."""
    from kairos.stack import demo as demo_mod

    code = demo_mod.run(
        demo_mod.DemoOptions(
            data=data,
            symbol=symbol,
            model=model,
            speed=speed,
            last=last,
            out=out,
            live=live,
            console=web_console,
        ),
        console,
    )
    raise typer.Exit(code)


models_app = typer.Typer(
    no_args_is_help=True, help="Model lifecycle in the MLflow registry: list, promote, rollback."
)
app.add_typer(models_app, name="models")
UriOption = Annotated[
    str, typer.Option(help="MLflow tracking/registry URI (default $KAIROS_MLFLOW_URI or .kairos/mlflow.db).")
]


def _uri(uri: str) -> str:
    from kairos.training.registry import default_tracking_uri

    return uri or default_tracking_uri()


def _default_max_age() -> float:
    import os

    return float(os.environ.get("KAIROS_INFERENCE_MODEL_MAX_AGE_DAYS", "30"))


@models_app.command("list")
def models_list(
    name: Annotated[str, typer.Argument(help="A registered model (default: all).")] = "",
    tracking_uri: UriOption = "",
    max_age_days: Annotated[
        float | None,
        typer.Option(
            help="Flag the champion EXPIRED past this age without a newer passing version "
            "(default: the inference server's, $KAIROS_INFERENCE_MODEL_MAX_AGE_DAYS or 30; 0: never)."
        ),
    ] = None,
    run_dir: RunDir = services.STATE_DIR / "run",
    inference_addr: Annotated[
        str,
        typer.Option(help="Inference server for the live figures (default: the one `kairos up` started)."),
    ] = "",
    inference_token_file: Annotated[
        Path | None, typer.Option(help="Its bearer token (default: RUN_DIR's inference token).")
    ] = None,
) -> None:
    """Versions, aliases (champion, challenger, previous-champion), gate verdicts, out-of-sample figures,
    age (the champion marked EXPIRED past the maximum age, ADR 0098), and for the versions inference
    serves (GetModelStatus): role, live paper figures and drift."""
    import time

    from kairos.stack import credentials
    from kairos.stack import models as lifecycle
    from kairos.stack.serving import shadow_text

    age_limit = _default_max_age() if max_age_days is None else max_age_days
    try:
        rows = lifecycle.list_versions(_uri(tracking_uri), name or None, age_limit)
    except lifecycle.ModelsError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_ERROR) from exc
    if not inference_addr:
        inference = next((s for s in processes.recorded_services(run_dir) if s.name == "inference"), None)
        inference_addr = inference.grpc_addr if inference is not None and inference.alive() else ""
    token = (
        inference_token_file.read_text().strip()
        if inference_token_file is not None
        else credentials.read_token(run_dir, "inference")
    )
    served, why = lifecycle.live_models(inference_addr, token)
    if served is not None and name:
        served = [m for m in served if m.name == name]
    table = Table(
        "model", "version", "aliases", "gate", "Sharpe (interval)", "DSR / trials", "serving",
        "bars", "net", "Sharpe live", "turnover/bar", "trades", "drift", "data", "created", "age",
    )  # fmt: skip
    now_us = time.time_ns() // 1000
    for row in lifecycle.join_live(rows, served):
        r, m = row.version, row.live
        gate = (r.gate if r is not None else "") or (m.gate if m is not None else "")
        cells = [
            f"[{GATE_STYLES[gate]}]{gate}[/]" if gate in GATE_STYLES else (gate or "-"),
        ]
        if r is not None:
            sharpe = "" if r.sharpe is None else f"{r.sharpe:.2f}"
            if r.sharpe_ci:
                sharpe += f" [{r.sharpe_ci[0]:.2f}, {r.sharpe_ci[1]:.2f}]"
            dsr = "" if r.dsr is None else f"{r.dsr:.3f} / {r.n_trials or 0:.0f}"
            ident = [r.name, r.version, ", ".join(r.aliases)]
            cells += [sharpe, dsr]
        else:
            ident = [m.name, m.version, "(not registered)"]
            cells += [m.sharpe_text, f"{m.deflated_sharpe:.3f} / {m.n_trials}" if m.validated else ""]
        if m is None:
            live = ["-", "-", "-", "-", "-", "-", "-"]
        else:
            role = m.role + (" [red]EXPIRED[/]" if m.expired else "")
            live = [role, *shadow_text(m.shadow), m.drift.text if m.drift is not None else "-"]
        if r is not None:
            age = f"{(now_us - r.created_us) / 86_400e6:.1f} d" if r.created_us else "-"
            tail = [r.dataset, r.created, age + (" [red]EXPIRED[/]" if r.expired else "")]
        else:
            tail = [m.source, "", ""]
        table.add_row(*ident, *cells, *live, *tail)
    console.print(table)
    for r in rows:
        if r.expired:
            console.print(
                f"[red]{r.name} {r.version} (@champion) is expired:[/] older than {age_limit:g} days "
                "and no newer version passed the gate since; retrain, or promote a newer version",
                highlight=False,
            )
    if served is None:
        console.print(f"inference not reachable: {why}; live figures and drift not shown")
    elif served and not any(m.shadow for m in served):
        console.print("shadow evaluation is off (kairos-inference --shadow-models): no paper figures")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="The registered model, e.g. kairos-eurusd.")],
    version: Annotated[str, typer.Option(help="Version to promote (default: the @challenger).")] = "",
    tracking_uri: UriOption = "",
    if_significant: Annotated[
        bool,
        typer.Option(
            "--if-significant",
            help="Promote the @challenger only if the inference server's promotion test (shadow, live "
            "bars, ADR 0097) says it is significantly better than the serving @champion; exit 2 if not.",
        ),
    ] = False,
    inference_addr: Annotated[
        str, typer.Option(help="Inference gRPC host:port (with --if-significant).")
    ] = "127.0.0.1:7501",
    token_file: Annotated[
        Path | None,
        typer.Option(help="The inference bearer token file (default: the run directory's inference.token)."),
    ] = None,
    run_dir: RunDir = services.STATE_DIR / "run",
) -> None:
    """Make a version @champion (the old one becomes @previous-champion); inference swaps on its next poll."""
    from kairos.stack import models as lifecycle

    if if_significant:
        from kairos.stack import credentials

        if version:
            err.print("--if-significant promotes the @challenger the server tested; drop --version")
            raise typer.Exit(EXIT_ERROR)
        token = token_file.read_text().strip() if token_file else credentials.read_token(run_dir, "inference")
        d = lifecycle.promote_if_significant(_uri(tracking_uri), name, inference_addr, token)
        if d.promoted:
            console.print(f"{name}@champion: version {d.champion or '-'} -> {d.challenger}: {d.reason}")
            return
        console.print(f"{name}: not promoted: {d.reason}", highlight=False)
        raise typer.Exit(EXIT_BAD_DATA)
    try:
        old, new = lifecycle.promote(_uri(tracking_uri), name, version or None)
    except lifecycle.ModelsError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_ERROR) from exc
    console.print(f"{name}@champion: version {old or '-'} -> {new}" + (" (unchanged)" if old == new else ""))


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="The registered model.")],
    tracking_uri: UriOption = "",
) -> None:
    """Put @previous-champion back as @champion; a second rollback undoes the first."""
    from kairos.stack import models as lifecycle

    try:
        cur, prev = lifecycle.rollback(_uri(tracking_uri), name)
    except lifecycle.ModelsError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_ERROR) from exc
    console.print(f"{name}@champion: version {cur} -> {prev} (rolled back)")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
