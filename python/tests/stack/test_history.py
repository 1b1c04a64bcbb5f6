"""`kairos history` end to end: the real collector, the real bridge library (the DLL's C++ code through
the Python extension) driven by a stand-in for the terminal that answers history requests the way
KairosBridge.mq5 does (CopyTicksRange / CopyRates over real data, trade-server time), and the
training importer reading what the command wrote.

Covered: a real tick file and a real M1 bar file round-trip exactly (every tick and bar, times in
UTC); chunks without rows inside the range are kept as empty; an interrupted download resumes
without asking for the finished chunks again; a chunk the terminal cannot copy, a chunk its history
does not cover, and a range without a single row each fail naming the chunk and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

import kairos.bridge.client as kb
from kairos.stack import history, processes, services
from kairos.training.data import read_market_data, read_ticks

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
TICKS = DATA / "eurusd-ticks-2020-01-01.csv"
BARS = DATA / "gbpusd-m1-bid-2012.csv"
SERVER_OFFSET_MS = 2 * 3_600_000  # the terminal's clock: UTC+2, as many brokers run


@dataclass
class Terminal:
    """The terminal and the EA's history handler, over real data (UTC in the files; the terminal
    hands MT5 server time to the bridge, which sends UTC). ``history_start_msc``: what the terminal
    has loaded (a chunk starting before it is PARTIAL); ``broken``: chunk starts answered ERROR."""

    collector: str
    key: str
    history_start_msc: int = 0
    broken: set[int] = field(default_factory=set)
    asked: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        t = read_ticks(str(TICKS))
        self.ticks = kb.quote_ticks(t["time_msc"].to_numpy() + SERVER_OFFSET_MS, t["bid"], t["ask"])
        b = read_market_data(str(BARS)).frame
        rates = np.zeros(len(b), dtype=kb.MQL_RATES_DTYPE)
        rates["time"] = b["time"].astype("int64").to_numpy() // 1000 + SERVER_OFFSET_MS // 1000  # ms -> s
        for c in ("open", "high", "low", "close"):
            rates[c] = b[c].to_numpy()
        rates["tick_volume"] = 1
        self.rates = rates
        self.stop = threading.Event()
        self.bridge = kb.Bridge(self.collector, "", terminal_name="terminal-stand-in", bridge_key=self.key)
        self.bridge.set_server_offset(SERVER_OFFSET_MS)
        self.bridge.announce_symbol("EURUSD", 5)
        self.bridge.announce_symbol("GBPUSD", 5)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            req = self.bridge.poll_history()
            if req is None:
                time.sleep(0.002)
                continue
            self.asked.append((req.from_msc, req.to_msc))
            self.answer(req)

    def push(self, send: object, rows: np.ndarray) -> None:
        for at in range(0, len(rows), 4096):  # the EA hands them over in slices
            while send(rows[at : at + 4096]) == kb.Status.E_QUEUE_FULL:  # type: ignore[operator]
                time.sleep(0.005)

    def end(self, req: kb.HistoryRequest, status: int, first: int = 0, message: str = "") -> None:
        while self.bridge.history_end(req.request_id, status, first, message) == kb.Status.E_QUEUE_FULL:
            time.sleep(0.005)

    def answer(self, req: kb.HistoryRequest) -> None:
        if req.from_msc in self.broken:
            self.end(req, kb.HISTORY_ERROR, 0, "CopyTicksRange failed: error 4401 (ERR_HISTORY_NOT_FOUND)")
            return
        lo, hi = (
            req.from_msc + SERVER_OFFSET_MS,
            req.to_msc + SERVER_OFFSET_MS,
        )  # CopyTicksRange takes server time
        if req.kind == kb.HISTORY_TICKS:
            rows = self.ticks[(self.ticks["time_msc"] >= lo) & (self.ticks["time_msc"] < hi)]
            self.push(lambda r: self.bridge.history_ticks(req.request_id, r), rows)
        else:
            t = self.rates["time"] * 1000
            rows = self.rates[(t >= lo) & (t < hi)]
            self.push(lambda r: self.bridge.history_bars(req.request_id, r), rows)
        if self.history_start_msc and req.from_msc < self.history_start_msc:
            first = self.history_start_msc + SERVER_OFFSET_MS
            self.end(req, kb.HISTORY_PARTIAL, first, "SERIES_TERMINAL_FIRSTDATE is after the chunk's start")
        elif len(rows) == 0:
            self.end(req, kb.HISTORY_EMPTY, 0, "CopyTicksRange returned 0 ticks")
        else:
            self.end(req, kb.HISTORY_DONE)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.bridge.close()


@dataclass
class Stack:
    settings: services.StackSettings
    grpc: str
    token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("history")
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=run_dir)
    binaries = services.build_go_binaries(settings.bin_dir)
    procs = processes.Stack(run_dir)
    try:
        procs.start_all(services.specs(settings, binaries)[:1])  # the collector alone
        yield Stack(
            settings, f"127.0.0.1:{settings.ports.collector_grpc}", settings.credentials().token("collector")
        )
    finally:
        procs.stop()


@pytest.fixture
def terminal(stack: Stack) -> Iterator[Terminal]:
    term = Terminal(f"127.0.0.1:{stack.settings.ports.collector_bridge}", stack.settings.ensure_bridge_key())
    deadline = time.monotonic() + 15
    while not term.bridge.counters()["market_data_connected"]:
        assert time.monotonic() < deadline, "the bridge did not connect to the collector"
        time.sleep(0.01)
    time.sleep(0.2)  # the symbol announcements reach the collector
    yield term
    term.close()


def ms(text: str) -> int:
    return history.parse_time(text)


def fetch(stack: Stack, out: Path, start: str, end: str, **kw: object) -> tuple[history.Result, list[str]]:
    lines: list[str] = []
    res = history.download(
        kw.pop("symbol", "EURUSD"),  # type: ignore[arg-type]
        ms(start),
        ms(end),
        out=out,
        collector=stack.grpc,
        token=stack.token,
        progress=lines.append,
        **kw,  # type: ignore[arg-type]
    )
    return res, lines


def test_a_real_tick_file_round_trips_through_the_bridge_into_the_importer(
    stack: Stack, terminal: Terminal, tmp_path: Path
) -> None:
    out = tmp_path / "eurusd.parquet"

    res, lines = fetch(stack, out, "2020-01-01T12:00", "2020-01-02T00:00", chunk_ms=3 * 3_600_000)

    want = read_ticks(str(TICKS))
    got = read_ticks(str(out))  # the training importer reads what the command wrote
    assert res.rows == len(want) == 9500
    assert got["time_msc"].tolist() == want["time_msc"].tolist()
    assert np.array_equal(got["bid"].to_numpy(), want["bid"].to_numpy())
    assert np.array_equal(got["ask"].to_numpy(), want["ask"].to_numpy())
    # 12:00-15:00 has no ticks (the file starts at 17:00): kept as an empty chunk, not an error.
    assert res.chunks == 4 and len(res.empty) == 1 and "chunk 1/4" in res.empty[0]
    assert [ln.split(":")[0] for ln in lines] == [
        f"chunk {i}/4 [2020-01-01 {h}" for i, h in zip(range(1, 5), ("12", "15", "18", "21"), strict=True)
    ]
    assert "terminal-stand-in" in res.terminal
    assert not (tmp_path / "eurusd.parquet.parts").exists()


def test_real_m1_bars_round_trip_with_their_times_in_utc(
    stack: Stack, terminal: Terminal, tmp_path: Path
) -> None:
    out = tmp_path / "gbpusd-m1.parquet"

    res, _ = fetch(
        stack, out, "2012-02-01", "2012-02-08", symbol="GBPUSD", timeframe="M1", chunk_ms=2 * history.DAY_MS
    )

    want = read_market_data(str(BARS)).frame
    want = want[want["time"] < pd.Timestamp("2012-02-08", tz="UTC")]
    got = read_market_data(str(out))
    assert got.kind == "bars" and res.rows == len(want) > 5000
    assert got.frame["time"].tolist() == want["time"].tolist()
    for c in ("open", "high", "low", "close"):
        assert np.array_equal(got.frame[c].to_numpy(), want[c].to_numpy()), c


def test_an_interrupted_download_resumes_without_asking_for_the_finished_chunks(
    stack: Stack, terminal: Terminal, tmp_path: Path
) -> None:
    out = tmp_path / "resume.parquet"
    terminal.broken = {ms("2020-01-01T21:00")}  # the last chunk fails the first time
    with pytest.raises(
        history.HistoryError,
        match=r"chunk 4/4 \[2020-01-01 21:00 .. 2020-01-02 00:00\) UTC: the "
        r"terminal could not copy it: CopyTicksRange failed: error 4401",
    ):
        fetch(stack, out, "2020-01-01T12:00", "2020-01-02T00:00", chunk_ms=3 * 3_600_000)
    assert len(list((tmp_path / "resume.parquet.parts").glob("*.parquet"))) == 3
    terminal.broken = set()
    terminal.asked.clear()

    res, lines = fetch(stack, out, "2020-01-01T12:00", "2020-01-02T00:00", chunk_ms=3 * 3_600_000)

    assert terminal.asked == [(ms("2020-01-01T21:00"), ms("2020-01-02T00:00"))]
    assert res.resumed == 3 and res.downloaded == 1 and res.rows == 9500
    assert sum("resumed" in ln for ln in lines) == 3
    assert len(read_ticks(str(out))) == 9500


def test_a_chunk_before_the_terminals_history_is_partial_naming_where_it_starts(
    stack: Stack, terminal: Terminal, tmp_path: Path
) -> None:
    terminal.history_start_msc = ms("2020-01-01T18:00")

    with pytest.raises(history.HistoryError) as e:
        fetch(stack, tmp_path / "p.parquet", "2020-01-01T17:00", "2020-01-01T19:00", chunk_ms=3_600_000)

    assert str(e.value).startswith(
        "chunk 1/2 [2020-01-01 17:00 .. 2020-01-01 18:00) UTC: partial: the terminal's history of EURUSD "
        "starts at 2020-01-01 18:00 UTC"
    )


def test_a_range_without_a_single_row_is_an_error_not_an_empty_file(
    stack: Stack, terminal: Terminal, tmp_path: Path
) -> None:
    out = tmp_path / "none.parquet"
    with pytest.raises(
        history.HistoryError,
        match=r"the range 2020-01-03 00:00 .. 2020-01-04 00:00 UTC is empty: "
        r"the terminal has no ticks of EURUSD in any of its 2 chunks \(first: chunk 1/2",
    ):
        fetch(stack, out, "2020-01-03", "2020-01-04", chunk_ms=12 * 3_600_000)
    assert not out.exists()


def test_the_command_line_shows_progress_and_names_a_failing_chunk(
    stack: Stack, terminal: Terminal, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text(stack.token)
    base = [
        sys.executable,
        "-m",
        "kairos.cli",
        "history",
        "EURUSD",
        "--collector",
        stack.grpc,
        "--token-file",
        str(token),
    ]
    env = {**os.environ, "COLUMNS": "1000"}
    ok = subprocess.run(
        [
            *base,
            "--from",
            "2020-01-01T16:00",
            "--to",
            "2020-01-02",
            "--ticks",
            "--chunk",
            "4h",
            "--out",
            str(tmp_path / "cli.parquet"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "chunk 1/2 [2020-01-01 16:00 .. 2020-01-01 20:00) UTC:" in ok.stdout
    assert "9500 ticks of EURUSD" in ok.stdout
    terminal.broken = {ms("2020-01-01T16:00")}
    bad = subprocess.run(
        [
            *base,
            "--from",
            "2020-01-01T16:00",
            "--to",
            "2020-01-02",
            "--ticks",
            "--chunk",
            "4h",
            "--out",
            str(tmp_path / "bad.parquet"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1
    assert (
        "chunk 1/2 [2020-01-01 16:00 .. 2020-01-01 20:00) UTC: the terminal could not copy it" in bad.stderr
    )
    neither = subprocess.run(
        [*base, "--from", "2020-01-01", "--to", "2020-01-02"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert neither.returncode == 1 and "exactly one of --ticks or --bars" in neither.stderr


def test_without_a_terminal_the_collector_says_so(stack: Stack, tmp_path: Path) -> None:
    with pytest.raises(history.HistoryError, match="FAILED_PRECONDITION: no MT5 terminal is connected"):
        fetch(stack, tmp_path / "x.parquet", "2020-01-01", "2020-01-02")
