"""Every console script the package installs, and every command of the typer ones, answers --help.

A help text is user-facing code too: kairos-inference --help once died with a TypeError because a
setting's prose said "~11% of a core" and argparse formats help with %."""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


def scripts() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def typer_app(entry: str) -> typer.Typer | None:
    app = getattr(importlib.import_module(entry.partition(":")[0]), "app", None)
    return app if isinstance(app, typer.Typer) else None


def argparse_main(entry: str) -> Callable[[list[str]], None]:
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def command_paths(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's path under cmd (typer vendors its own click: a group is what has commands)."""
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


@pytest.mark.parametrize("script", sorted(scripts()))
def test_every_console_script_and_command_prints_its_help(
    script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = scripts()[script]
    app = typer_app(entry)
    if app is not None:
        group = typer.main.get_command(app)
        paths = list(command_paths(group))
        assert len(paths) > 1, f"{script}: a typer app without commands"
        runner = CliRunner()
        for path in paths:
            res = runner.invoke(app, [*path, "--help"], prog_name=script)
            shown = " ".join((script, *path))
            assert res.exit_code == 0, (
                f"{shown} --help: exit {res.exit_code}\n{res.output}\n{res.exception!r}"
            )
            assert "Usage" in res.output, f"{shown} --help printed no usage:\n{res.output}"
        return
    # The argparse services (kairos-inference, kairos-console, kairos-record) take argv.
    with pytest.raises(SystemExit) as e:
        argparse_main(entry)(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0, f"{script} --help: exit {e.value.code}"
    assert out.startswith("usage:"), f"{script} --help printed no usage:\n{out}"
