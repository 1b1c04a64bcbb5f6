"""Fixtures of the inference tests: the server on loopback, a real NATS server, real market data and
the real model fixture trained on GBPUSD M1 bars (python/tests/data/model, made by kairos-train)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import (
    MODEL_DIR,
    ServerThread,
    StreamClient,
    load_eurusd_ticks,
    load_gbpusd_m1,
    server_config,
)

from kairos.features import ModelCard


@pytest.fixture(scope="session")
def gbpusd() -> pd.DataFrame:
    return load_gbpusd_m1(3000)


@pytest.fixture(scope="session")
def eurusd_ticks() -> pd.DataFrame:
    return load_eurusd_ticks()


@pytest.fixture(scope="session")
def model_path() -> Path:
    path = MODEL_DIR / "model.onnx"
    assert path.is_file(), f"model fixture missing: {path} (regenerate it with `make model-fixture`)"
    return path


@pytest.fixture(scope="session")
def model_card(model_path: Path) -> ModelCard:
    return ModelCard.from_onnx(model_path)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(model: Path | str, **kw: Any) -> ServerThread:
        st = ServerThread(server_config(model, **kw)).start()
        started.append(st)
        return st

    yield start
    for st in started:
        st.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerThread], model_path: Path) -> ServerThread:
    return start_server(model_path)


@pytest.fixture
def stream(server: ServerThread) -> Iterator[StreamClient]:
    c = StreamClient(server.target)
    yield c
    c.close()
