"""kairos-train through its real entry point: the whole pipeline on real bars, ONNX parity, the MLflow
round trip (register, load by alias), the registration gate, and exit codes for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest
import torch

from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.training.cli import main
from kairos.training.train import TABULAR

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
GBPUSD_BID = DATA / "gbpusd-m1-bid-2012.csv"
KAIROS_TRAIN = Path(sys.executable).parent / "kairos-train"
SMALL = ["--max-bars", "3000", "--epochs", "2", "--folds", "2", "--window", "8", "--hidden", "16"]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str] | None = None) -> int:
    with pytest.raises(SystemExit) as e:
        main(args)
    code = e.value.code
    return int(code) if code is not None else 0


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAIROS_TRAIN), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("run")
    code = run_main(["run", "--data", str(GBPUSD_BID), "--run", str(d), *SMALL, "--no-register"])
    assert code == 0
    return d


def test_run_writes_every_artefact_of_every_step(run_dir: Path) -> None:
    for name in (
        "bars.parquet",
        "import.json",
        "run.json",
        "model.pkl",
        "oos.npz",
        "importance.json",
        "model.onnx",
        "model.card.json",
    ):
        assert (run_dir / name).is_file(), name
    for png in ("equity.png", "importance.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    report = json.loads((run_dir / "report.json").read_text())
    # The candidate: the best family out of sample among those whose final model learned; the other
    # families stay beside it under their own names.
    chosen, sel = report["candidate_family"], report["selection"]
    assert chosen in sel["eligible"] and sel["sharpes"][chosen] == max(
        sel["sharpes"][f] for f in sel["eligible"]
    )
    assert report["stats"]["model"]["sharpe"] == pytest.approx(sel["sharpes"][chosen])
    others = {"mlp", "logreg", "lgbm"} - {chosen}
    assert set(report["strategies"]) == {"model", "flat", "buy_and_hold", "momentum", *others}
    gate = report["gate"]
    # Trials: one configuration of the candidate plus the other model families trained on the folds.
    assert report["trials"]["families"] == ["mlp", "logreg", "lgbm"] and report["trials"]["search"] == 1
    assert gate["reason"] and isinstance(gate["passed"], bool) and gate["n_trials"] == 3
    assert [c["name"] for c in gate["conditions"]] == [
        "net_return",
        "deflated_sharpe",
        "beats_" + max((*others, "momentum"), key=lambda k: report["stats"][k]["sharpe"]),
        "alpha_vs_buy_and_hold",
    ]
    md = (run_dir / "report.md").read_text()
    assert "| model |" in md and "## Verdict" in md and "95% interval" in md and "Trials behind" in md
    card = ModelCard.load(run_dir / "model.card.json")
    card.check_schema()
    assert (card.window, card.timeframe_s, card.dataset["bars"]) == (1 if chosen in TABULAR else 8, 60, 3000)
    assert card.metrics["gate"]["passed"] == gate["passed"]
    assert card.metrics["n_trials"] == 3
    low, high = card.metrics["sharpe_ci"]
    assert low < card.metrics["sharpe"] < high
    assert card.dataset["sha256"] == json.loads((run_dir / "import.json").read_text())["sha256"]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["purge"] == 5 and len(run["folds"]) == 2 and run["git_sha"]
    # Every family's calibrated fold probabilities and fold results, on the same folds (for the gate).
    oos = np.load(run_dir / "oos.npz")
    assert set(run["models"]) == {"mlp", "logreg", "lgbm"}
    for fam, rec in run["models"].items():
        assert len(rec["folds"]) == 2 and rec["folds"][0]["log_loss"] > 0
        for k in range(2):
            p = oos[f"{fam}_{k}"]
            assert p.shape == (len(oos[f"val_{k}"]), 3)
            np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert card.architecture == card.training["family"] == chosen
    assert card.training["method"] == "temperature+bias"
    assert card.training["trials"] == 1 and card.training["learned"]
    importance = json.loads((run_dir / "importance.json").read_text())
    assert set(importance["mlp"]["permutation_log_loss_rise"]) == set(SCHEMA.names)
    assert set(importance["lgbm"]["tree_shap_mean_abs"]) == set(SCHEMA.names)


def test_exported_onnx_matches_the_calibrated_model_on_held_out_bars_within_1e_5(run_dir: Path) -> None:
    from kairos.training.labels import windows
    from kairos.training.pipeline import candidate_family, load_model, load_run_bars

    assert json.loads((run_dir / "export.json").read_text())["max_abs_diff"] <= 1e-5
    model, held_out = load_model(run_dir, candidate_family(run_dir))
    bars, _ = load_run_bars(run_dir)
    x = windows(compute_features(bars), held_out, model.window)
    assert len(x) > 100
    sess = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {"features": x})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=1e-5)
    assert sess.get_inputs()[0].shape[1:] == [model.window, SCHEMA.n_features]


@pytest.mark.parametrize(
    ("arch", "window", "extra"),
    # logreg learns nothing at horizon 5 on these 3,000 bars (measured), but does at 3.
    [("tcn", 8, []), ("gru", 8, []), ("lgbm", 1, []), ("logreg", 1, ["--horizon", "3"])],
)
def test_every_family_trains_and_exports_the_same_contract_with_parity(
    arch: str,
    window: int,
    extra: list[str],
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = tmp_path / arch
    shutil.copytree(run_dir, d)
    assert run_main(["train", "--run", str(d), "--arch", arch, *SMALL[2:], *extra]) == 0
    assert run_main(["export", "--run", str(d), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "parity max abs diff" in out
    assert json.loads((d / "export.json").read_text())["max_abs_diff"] <= 1e-5
    card = ModelCard.from_onnx(tmp_path / "out" / "model.onnx")
    assert (card.architecture, card.window) == (arch, window)
    sess = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["features"] and [o.name for o in sess.get_outputs()] == [
        "probs"
    ]
    assert sess.get_inputs()[0].shape[1:] == [window, SCHEMA.n_features]


def test_same_seed_same_weights_other_seed_other_weights(run_dir: Path, tmp_path: Path) -> None:
    from kairos.training.pipeline import load_model

    states: list[dict[str, torch.Tensor]] = []
    for seed in ("7", "7", "8"):
        d = tmp_path / f"s{len(states)}"
        d.mkdir()
        for f in ("bars.parquet", "import.json"):
            shutil.copy(run_dir / f, d / f)
        assert run_main(["train", "--run", str(d), "--seed", seed, *SMALL[2:]]) == 0
        states.append(load_model(d)[0].nets[0].state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def _oracle(run_dir: Path) -> None:
    """Replace the fold predictions by the true next-bar direction (real bars, a known-good model)."""
    import pandas as pd  # type: ignore[import-untyped]

    close = pd.read_parquet(run_dir / "bars.parquet")["close"].to_numpy()
    arch = json.loads((run_dir / "run.json").read_text())["train"]["arch"]
    oos = dict(np.load(run_dir / "oos.npz"))
    for k in range(sum(1 for n in oos if n.startswith("val_"))):
        i = oos[f"val_{k}"]
        oos[f"{arch}_{k}"] = np.eye(3)[np.sign(close[i + 1] - close[i]).astype(int) + 1]
    np.savez(run_dir / "oos.npz", **oos)


@pytest.mark.slow
def test_mlflow_registers_only_a_model_that_beats_the_baselines_and_serves_it_by_alias(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    import mlflow.onnx
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    real = json.loads((run_dir / "report.json").read_text())
    code = run_main(["register", "--run", str(run_dir), "--tracking-uri", uri, "--name", "kairos-test"])
    if real["gate"]["passed"]:
        assert code == 0
    else:  # the honest outcome on real data: logged, not registered, reason printed, exit 3
        assert code == 3
        assert "not registered: model fails the gate: FAILED" in capsys.readouterr().err.replace("\n", " ")
        assert client.search_registered_models() == []
        exp = client.get_experiment_by_name("kairos-train")
        assert exp is not None and len(client.search_runs([exp.experiment_id])) == 1

    good = tmp_path / "oracle"
    shutil.copytree(run_dir, good)
    _oracle(good)
    assert run_main(["backtest", "--run", str(good)]) == 0
    assert json.loads((good / "report.json").read_text())["gate"]["passed"]
    # The card on disk came from the real run's export: registering it under the new verdict is refused.
    capsys.readouterr()
    assert run_main(["register", "--run", str(good), "--tracking-uri", uri, "--name", "kairos-test"]) == 1
    assert "was exported before the latest backtest" in capsys.readouterr().err.replace("\n", " ")
    assert run_main(["export", "--run", str(good)]) == 0
    assert (
        run_main(
            [
                "register",
                "--run",
                str(good),
                "--tracking-uri",
                uri,
                "--name",
                "kairos-test",
                "--alias",
                "champion",
            ]
        )
        == 0
    )
    info = json.loads((good / "mlflow.json").read_text())
    assert info["registered"] and info["alias_uri"] == "models:/kairos-test@champion"

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.onnx.load_model("models:/kairos-test@champion")
    assert ModelCard.from_onnx(model) == ModelCard.load(good / "model.card.json")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = (
        np.random.default_rng(0)
        .normal(size=(4, ModelCard.from_onnx(model).window, SCHEMA.n_features))
        .astype(np.float32)
    )
    ref = ort.InferenceSession(str(good / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"features": x})[0], ref.run(None, {"features": x})[0])
    mv = client.get_model_version_by_alias("kairos-test", "champion")
    assert mv.run_id is not None
    run = client.get_run(mv.run_id)
    assert run.data.tags["dataset_sha256"].startswith("sha256:") and run.data.tags["git_sha"]
    assert run.data.params["seed"] == "0" and "model.mean_fold_sharpe" in run.data.metrics
    m = run.data.metrics
    assert m["gate.passed"] == 1.0 and m["gate.n_trials"] == 3.0 and run.data.tags["gate_passed"] == "True"
    assert m["oos.model.sharpe_ci_low"] < m["oos.model.sharpe"] < m["oos.model.sharpe_ci_high"]
    assert {"oos.model.dsr", "oos.model.psr", "oos.model.break_even_cost", "oos.logreg.sharpe"} <= set(m)
    card_path = mlflow.artifacts.download_artifacts(
        run_id=mv.run_id, artifact_path="model.card.json", dst_path=str(tmp_path)
    )
    assert ModelCard.load(card_path).feature_schema_hash == SCHEMA.hash


def test_help_and_exit_codes_through_the_installed_console_script(tmp_path: Path) -> None:
    top = cli("--help")
    assert top.returncode == 0
    for cmd in ("import", "train", "export", "backtest", "register", "run"):
        assert cmd in top.stdout
    bad = tmp_path / "EURUSD_M1.csv"
    bad.write_text(
        "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
        "2012.02.01\t00:00:00\t1.57597\t1.57606\t1.57576\t1.57576\t12\t0\t9\n"
        "2012.02.01\t00:01:00\t1.57576\t1.57583\t1.57543\tn/a\t9\t0\t9\n"
    )
    r = cli("import", "--data", str(bad), "--run", str(tmp_path / "r"))
    assert r.returncode == 2
    assert f"{bad}:3: field 'close'" in r.stderr.replace("\n", "")
    r = cli("backtest", "--run", str(tmp_path / "missing"))
    assert r.returncode == 1 and "run `kairos-train import" in r.stderr.replace("\n", " ")


@pytest.mark.parametrize("command", ["import", "train", "export", "backtest", "register", "run"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main([command, "--help"]) == 0
    assert f"Usage: kairos-train {command}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["train", "--no-such-option"], 1, "No such option"),
        (["train", "--arch", "transformer", "--run", "x"], 1, "--arch must be one of"),
        (["import", "--data", "/no/such/file.csv", "--run", "x"], 2, "/no/such/file.csv: no such file"),
        (["import", "--data", "sample:eurusd-h1", "--dedupe", "sometimes"], 1, "--dedupe must be"),
        (["export", "--run", "/no/such/run"], 1, "not found"),
    ],
)
def test_usage_and_data_errors_map_to_their_exit_codes(
    args: list[str], code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(args) == code
    assert text in capsys.readouterr().err.replace("\n", " ")


def test_a_model_that_learned_nothing_is_reported_and_not_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # EURUSD H1 (5,000 real bars): the logistic regression's calibrated inner-fold loss is not below
    # the class priors' (measured), so the run says so, exits 3 and writes no model.
    args = ["run", "--data", "sample:eurusd-h1", "--arch", "logreg", "--run", str(tmp_path), "--no-register"]
    assert run_main(args) == 3
    captured = capsys.readouterr()
    assert "learned nothing" in captured.out.replace("\n", " ") and "learned nothing" in captured.err
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["learned_nothing"] and run["final"]["inner_log_loss"] >= run["final"]["prior_log_loss"]
    assert not (tmp_path / "model.onnx").exists()
    assert run_main(["export", "--run", str(tmp_path)]) == 3
    assert "learned nothing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        (["--max-bars", "150"], "usable samples from 150 bars"),
        (["--max-bars", "600", "--folds", "20"], "20 folds need at least 800 samples"),
        (["--max-bars", "480", "--search", "--folds", "1"], "the search has"),
    ],
)
def test_too_little_data_for_the_folds_or_the_search_is_a_data_error_with_the_numbers(
    extra: list[str], text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--data", "sample:eurusd-h1", "--arch", "logreg", "--run", str(tmp_path), "--no-register"]
    assert run_main([*args, *extra]) == 2
    assert text in capsys.readouterr().err.replace("\n", " ")


def test_too_little_data_to_train_is_a_data_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--data", "sample:eurusd-h1", "--max-bars", "150", "--run", str(tmp_path), "--no-register"]
    assert run_main(args) == 2
    assert "usable samples from 150 bars" in capsys.readouterr().err.replace("\n", " ")


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        ([], 1, "pass --symbol (e.g. --symbol EURUSD) or --name"),
        (["--symbol", "EUR/USD"], 1, "--symbol 'EUR/USD': use letters"),
    ],
)
def test_data_without_a_symbol_in_its_name_needs_name_or_symbol_before_any_work(
    extra: list[str], code: int, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "series.csv"
    shutil.copy(GBPUSD_BID, data)
    assert run_main(["run", "--data", str(data), "--run", str(tmp_path / "r"), *extra]) == code
    assert text in capsys.readouterr().err.replace("\n", " ")
    assert not (tmp_path / "r").exists()  # failed before the import
