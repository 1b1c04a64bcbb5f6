"""`kairos-train loop`: rounds on a rolling window of recorded + imported real bars through the real
pipeline steps, the gate and a real MLflow registry (SQLite); the schedule; the config file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa
import pytest

from kairos.recording import store
from kairos.training.cli import main
from kairos.training.loop import Cron, LoopConfig, LoopConfigError, run_round

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
GBPUSD_BID = DATA / "gbpusd-m1-bid-2012.csv"
SMALL_TRAIN = 'arch = "mlp"\nepochs = 2\nfolds = 2\nwindow = 8\nhidden = 16\n'


def _record(root: Path, bars: pd.DataFrame) -> None:
    """Real bars into the recorded dataset, as the recorder writes them (kairos.recording.store)."""
    t = bars["time"].astype("datetime64[ms, UTC]").astype("int64").to_numpy()
    table = pa.table(
        {
            "time": t,
            "open": bars["open"],
            "high": bars["high"],
            "low": bars["low"],
            "close": bars["close"],
            "spread": bars["spread"],
            "tick_volume": bars["tick_volume"],
            "real_volume": np.zeros(len(bars)),
            "spread_points": pa.array(np.zeros(len(bars), np.int32)),
        },
        schema=store.BAR_SCHEMA,
    )
    store.write_part(root, "GBPUSD", "M1", table, "time")


def _config(tmp: Path, sources: list[str], *, name: str = "kairos-gbpusd", extra: str = "") -> Path:
    p = tmp / "loop.toml"
    p.write_text(
        f'[schedule]\ninterval = "6h"\n[data]\nsources = {json.dumps(sources)}\ntimeframe = "M1"\n'
        f"window_days = 4\nmax_bars = 3000\n[train]\n{SMALL_TRAIN}[register]\n"
        f'name = "{name}"\nalias = "challenger"\ntracking_uri = "sqlite:///{tmp / "mlflow.db"}"\n'
        f'[loop]\ndir = "loop"\n{extra}'
    )
    return p


def _oracle(run_dir: Path) -> None:
    """The true next-bar direction as the candidate's fold predictions (real bars, a known-good model)."""
    close = pd.read_parquet(run_dir / "bars.parquet")["close"].to_numpy()
    arch = json.loads((run_dir / "run.json").read_text())["train"]["arch"]
    oos = dict(np.load(run_dir / "oos.npz"))
    for k in range(sum(1 for n in oos if n.startswith("val_"))):
        i = oos[f"val_{k}"]
        oos[f"{arch}_{k}"] = np.eye(3)[np.sign(close[i + 1] - close[i]).astype(int) + 1]
    np.savez(run_dir / "oos.npz", **oos)


def _aliases(uri: str, name: str) -> tuple[dict[str, str], int]:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    models = c.search_registered_models(filter_string=f"name = '{name}'")
    if not models:
        return {}, 0
    return {k: str(v) for k, v in models[0].aliases.items()}, len(c.search_model_versions(f"name = '{name}'"))


@pytest.mark.slow
def test_rounds_on_recorded_plus_imported_bars_register_a_challenger_only_when_the_gate_passes(
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    from kairos.training.data import load_bars

    bars, _ = load_bars(str(GBPUSD_BID))
    recorded_root = tmp_path / "recorded"
    _record(recorded_root, bars.iloc[-2000:])  # the newest bars come from the recording
    cfg = LoopConfig.load(_config(tmp_path, [str(GBPUSD_BID), f"recorded:{recorded_root}:GBPUSD:M1"]))
    uri = cfg.tracking_uri

    # A round whose model is known to be good (the oracle, planted after real training): registered
    # as @challenger, the round says so.
    good = run_round(cfg, now=datetime(2026, 1, 1, tzinfo=UTC), after_train=_oracle)
    assert good.status == "registered", good.reason
    assert good.alias_uri == "models:/kairos-gbpusd@challenger" and good.version == "1"
    # The window: the last 4 days before the newest (recorded) bar, capped at 3000 bars.
    assert good.window["bars"] == 3000 and good.window["last"] == str(bars["time"].iloc[-1])
    assert [s["bars"] for s in good.window["sources"]] == [len(bars), 2000]
    imported = json.loads((Path(good.run_dir) / "import.json").read_text())
    assert imported["bars"] == 3000 and imported["last"] == str(bars["time"].iloc[-1])
    # The exported card carries the training distribution of every feature (drift monitoring).
    card = json.loads((Path(good.run_dir) / "model.card.json").read_text())
    assert set(card["feature_distribution"]["features"]) == set(card["feature_names"])
    assert card["feature_distribution"]["di"]["q999"] > card["feature_distribution"]["di"]["q50"] > 0
    # The champion is what serves; the operator promotes version 1.
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(
        "kairos-gbpusd", "champion", "1"
    )
    before = _aliases(uri, "kairos-gbpusd")
    assert before == ({"challenger": "1", "champion": "1"}, 1)

    # The honest round on the same real data: the gate refuses, and nothing moves.
    real = run_round(cfg, now=datetime(2026, 1, 1, 6, tzinfo=UTC))
    assert real.status in ("gate_failed", "learned_nothing"), real
    assert real.reason and real.version is None
    if real.status == "gate_failed":
        assert real.gate is not None and not real.gate["passed"]
        assert any(not c["passed"] for c in real.gate["conditions"])
        assert real.gate["n_trials"] >= 1 + 1  # the earlier round counts as a trial
    assert _aliases(uri, "kairos-gbpusd") == before

    # A round on bad data changes nothing either, and says why.
    bad = tmp_path / "gbpusd-bad.csv"
    bad.write_text("timestamp,open,high,low,close\n2012-02-01 00:00:00,1.5,1.4,1.6,1.5\n")
    broken = run_round(
        LoopConfig.load(_config(tmp_path, [str(bad)])), now=datetime(2026, 1, 1, 12, tzinfo=UTC)
    )
    assert broken.status == "data_error" and "gbpusd-bad.csv:2" in broken.reason
    assert _aliases(uri, "kairos-gbpusd") == before
    history = [json.loads(x) for x in (cfg.dir / "history.jsonl").read_text().splitlines()]
    assert [h["status"] for h in history] == ["registered", real.status, "data_error"]
    assert json.loads((Path(broken.run_dir) / "round.json").read_text())["status"] == "data_error"


def test_the_cli_runs_one_round_and_exits_with_its_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, [str(tmp_path / "gbpusd-missing.csv")])
    with pytest.raises(SystemExit) as e:
        main(["loop", "--config", str(cfg), "--once"])
    assert e.value.code == 2
    assert "data_error" in capsys.readouterr().out
    (tmp_path / "bad.toml").write_text(
        '[schedule]\ninterval = "6h"\ncron = "* * * * *"\n[data]\nsources = ["x"]\n'
    )
    with pytest.raises(SystemExit) as e:
        main(["loop", "--config", str(tmp_path / "bad.toml"), "--once"])
    assert e.value.code == 1
    assert "exactly one of interval or cron" in capsys.readouterr().err


def test_config_errors_name_the_setting(tmp_path: Path) -> None:
    p = _config(tmp_path, ["sample:eurusd-h1"], extra="")
    p.write_text(p.read_text().replace('arch = "mlp"', 'arch = "mlp"\nlayers = 3'))
    with pytest.raises(LoopConfigError, match=r"\[train\] unknown setting\(s\) \['layers'\]"):
        LoopConfig.load(p)
    with pytest.raises(LoopConfigError, match="no such file"):
        LoopConfig.load(tmp_path / "nope.toml")


def test_cron_schedule() -> None:
    c = Cron.parse("30 22 * * 1-5")  # 22:30 UTC on weekdays
    t = datetime(2026, 1, 2, 22, 30, tzinfo=UTC)  # a Friday, at the time itself: strictly after
    assert c.next_after(t) == datetime(2026, 1, 5, 22, 30, tzinfo=UTC)  # Monday
    assert Cron.parse("*/15 * * * *").next_after(datetime(2026, 1, 1, 10, 7, 59, tzinfo=UTC)) == datetime(
        2026, 1, 1, 10, 15, tzinfo=UTC
    )
    assert Cron.parse("0 0 1 * *").next_after(datetime(2026, 1, 31, 23, 59, tzinfo=UTC)) == datetime(
        2026, 2, 1, tzinfo=UTC
    )
    assert Cron.parse("0 6 * * 0").next_after(datetime(2026, 1, 1, tzinfo=UTC)).isoweekday() == 7
    for bad in ("* * *", "60 * * * *", "* 24 * * *", "a * * * *"):
        with pytest.raises(LoopConfigError):
            Cron.parse(bad)
