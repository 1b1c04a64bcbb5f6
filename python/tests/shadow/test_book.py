"""The shadow book, bar by bar, equals the backtest's policy run and live-like fills on the same real
bars and the same model (the fixture, its card's policy): positions exactly, net returns to 1e-12."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest

from kairos.features import SCHEMA, ModelCard, compute_features, to_epoch_ms
from kairos.shadow.book import ShadowBook
from kairos.training.backtest import FillModel, fill_returns
from kairos.training.data import load_bars
from kairos.training.policy import Params, StopPath, run_policy

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
MODEL = Path(__file__).resolve().parents[1] / "data" / "model" / "model.onnx"


@pytest.mark.parametrize("stop_vol_mult", [0.0, 1.5])
def test_the_book_reproduces_the_backtest_bar_by_bar(stop_vol_mult: float) -> None:
    bars, _ = load_bars(str(DATA / "gbpusd-m1-bid-2012.csv"))
    bars = bars.iloc[:6000].reset_index(drop=True)
    card = ModelCard.from_onnx(MODEL)
    assert card.policy is not None
    x = compute_features(bars)
    first = int(np.argmax(np.isfinite(x).all(axis=1))) + card.window - 1
    idx = np.arange(first, len(bars))
    windows = np.stack([x[i - card.window + 1 : i + 1] for i in idx]).astype(np.float32)
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    probs = np.asarray(sess.run(["probs"], {"features": windows})[0], dtype=np.float64)
    vol = x[idx, SCHEMA.names.index(card.policy.vol_feature)] * card.policy.vol_unit
    o, lo, hi, c, sp = (bars[k].to_numpy() for k in ("open", "low", "high", "close", "spread"))
    # A lower entry threshold so the fixture trades often enough to test fills both ways; with
    # stops, tight enough that some trigger.
    params = Params(policy=card.policy).with_policy(
        entry_edge=card.policy.entry_edge / 5, stop_vol_mult=stop_vol_mult
    )
    fill = FillModel()
    nxt = np.minimum(idx + 1, len(bars) - 1)
    path = StopPath(o[nxt], lo[nxt], hi[nxt], sp[nxt], point=1e-5)

    run = run_policy(params, probs, vol, c[idx], stops=path)
    pos = run.lots / params.policy.max_lots
    _, net = fill_returns(o, c, sp, idx, pos, fill, params.policy.max_lots, stop_exit=run.stop_exit)

    book = ShadowBook(params, fill, point=1e-5)
    got_pos, got_net = [], []
    t = to_epoch_ms(bars["time"])
    for k, i in enumerate(idx):
        book.on_bar(int(t[i]), o[i], c[i], sp[i], probs[k, 0], probs[k, 2], vol[k], lo[i], hi[i])
        got_pos.append(book.pos)
        got_net.append(book.last_net)
    assert run.trades > 20  # entries, exits and reversals were exercised
    assert run.stop_exit is not None
    stops = int(np.isfinite(run.stop_exit[:-1]).sum())
    assert (stops >= 10) == (stop_vol_mult > 0) and book.stop_exits == stops
    np.testing.assert_array_equal(np.array(got_pos), pos)
    # The book settles decision k on bar k + 1; the backtest's last decision has no next bar.
    np.testing.assert_allclose(np.array(got_net[1:]), net[:-1], rtol=0, atol=1e-12)
    f = book.figures()
    assert f.bars == len(idx) - 1 and abs(f.total_return - net[:-1].sum()) < 1e-9
    assert f.trades == int((np.abs(np.diff(pos, prepend=0.0)) > 0).sum())
    assert 0 < f.exposure <= 1 and f.turnover > 0 and np.isfinite(f.sharpe)
