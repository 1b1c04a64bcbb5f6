"""The demo's tick reader and frame encoder (the Go and C decoders are exercised by `make demo`)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kairos.wirecheck import (
    BATCH_MAX,
    DEFAULT_TICKS,
    DataError,
    QuoteTick,
    encode_stream,
    eurusd_info,
    read_quote_ticks,
    summarize,
)


def test_reads_real_ticks_with_utc_millisecond_times() -> None:
    ticks = read_quote_ticks(DEFAULT_TICKS)
    assert len(ticks) == 9500
    # 20200101 170000065 -> 2020-01-01T17:00:00.065Z
    assert ticks[0] == QuoteTick(time_msc=1577898000065, bid=1.1212, ask=1.12172)
    assert all(a.time_msc <= b.time_msc for a, b in itertools.pairwise(ticks))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("20200101 170000065,1.1212,1.12172", "2: expected 4 comma-separated fields, found 3"),
        (
            "2020-01-01 17:00,1.1212,1.12172,0",
            "2: field time: '2020-01-01 17:00' is not YYYYMMDD HHMMSSmmm",
        ),
        ("20200101 170000065,abc,1.12172,0", "2: field bid: 'abc' is not a number"),
        ("20200101 170000065,1.1212,nan,0", "2: field ask: 'nan' is not a positive price"),
        ("20200101 170000065,-1.1,1.12172,0", "2: field bid: '-1.1' is not a positive price"),
    ],
)
def test_bad_row_error_names_file_line_and_field(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("20200101 170000065,1.121200,1.121720,0\n" + row + "\n")
    with pytest.raises(DataError) as err:
        read_quote_ticks(path)
    assert str(err.value) == f"{path}:{message}"


def test_stream_holds_every_tick_in_bounded_batches_with_gap_free_sequences() -> None:
    ticks = read_quote_ticks(DEFAULT_TICKS)[:1000]
    summary = summarize(encode_stream(ticks, eurusd_info()))
    batches = -(-len(ticks) // BATCH_MAX)
    assert summary["ticks"] == 1000
    assert summary["bodies"] == {"hello": 1, "symbol_info": 1, "ticks": batches}
    eurusd = summary["symbols"]["EURUSD"]
    assert (eurusd["first_sequence"], eurusd["last_sequence"]) == (1, 1000)
    assert (eurusd["first_time_msc"], eurusd["last_time_msc"]) == (ticks[0].time_msc, ticks[-1].time_msc)
    assert summary["last_frame_sequence"] == 2 + batches
