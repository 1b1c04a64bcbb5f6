"""The wire check's frame encoder on real ticks (the Go and C decoders are exercised by `make wirecheck`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kairos.training.data import read_ticks
from kairos.wirecheck import (
    BATCH_MAX,
    DEFAULT_TICKS,
    QuoteTick,
    as_quote_ticks,
    encode_stream,
    eurusd_info,
    main,
    summarize,
)


def test_reads_real_ticks_with_utc_millisecond_times() -> None:
    ticks = as_quote_ticks(read_ticks(str(DEFAULT_TICKS)))
    assert len(ticks) == 9500
    # 20200101 170000065 -> 2020-01-01T17:00:00.065Z
    assert ticks[0] == QuoteTick(time_msc=1577898000065, bid=1.1212, ask=1.12172)
    assert all(a.time_msc <= b.time_msc for a, b in itertools.pairwise(ticks))


def test_a_bad_tick_file_fails_the_check_naming_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("20200101 170000065,1.121200,1.121720,0\n20200101 170000065,abc,1.12172,0\n")
    rc = main(["--ticks", str(path), "--framecat-go", "/nonexistent", "--framecat-c", "/nonexistent"])
    assert rc == 1
    assert f"wirecheck: {path}:2: field 'bid': 'abc' is not a number" in capsys.readouterr().err


def test_stream_holds_every_tick_in_bounded_batches_with_gap_free_sequences() -> None:
    ticks = as_quote_ticks(read_ticks(str(DEFAULT_TICKS)))[:1000]
    summary = summarize(encode_stream(ticks, eurusd_info()))
    batches = -(-len(ticks) // BATCH_MAX)
    assert summary["ticks"] == 1000
    assert summary["bodies"] == {"hello": 1, "symbol_info": 1, "ticks": batches}
    eurusd = summary["symbols"]["EURUSD"]
    assert (eurusd["first_sequence"], eurusd["last_sequence"]) == (1, 1000)
    assert (eurusd["first_time_msc"], eurusd["last_time_msc"]) == (ticks[0].time_msc, ticks[-1].time_msc)
    assert summary["last_frame_sequence"] == 2 + batches
