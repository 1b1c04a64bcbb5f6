"""Where MLflow writes by default: beside the repository in .kairos/, or where the user says."""

from __future__ import annotations

from pathlib import Path

import pytest

from kairos.training.registry import ENV_URI, default_tracking_uri, project_root


def test_default_store_is_sqlite_under_dot_kairos_of_the_enclosing_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv(ENV_URI, raising=False)
    assert project_root() == tmp_path.resolve()
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / '.kairos' / 'mlflow.db'}"


def test_env_var_overrides_the_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_URI, "http://127.0.0.1:5000")
    assert default_tracking_uri() == "http://127.0.0.1:5000"
