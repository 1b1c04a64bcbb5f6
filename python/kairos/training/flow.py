"""The retraining round as a Prefect 3 flow, for users who run Prefect (the optional extra ``prefect``:
``uv sync --extra prefect`` or ``pip install 'kairos[prefect]'``; issue #16, ADR 0086).

The flow runs ``kairos.training.loop.run_round``, the very function ``kairos-train loop`` runs, with a
step runner that executes each step of the round as a Prefect task: ``kairos-promote`` (the
``[auto_promote]`` check), ``kairos-window``, ``kairos-train``, ``kairos-backtest`` (the gate) and
``kairos-register``. The steps, their order, the error handling, ``round.json`` and ``history.jsonl``
are the loop's own: Prefect adds its UI, retries and scheduling around them, nothing else. A failed
round (gate, bad data) completes the flow with its status in the returned dict, as the loop does; the
task that raised is marked failed in Prefect.

Run once against the Prefect API in ``PREFECT_API_URL`` (or Prefect's ephemeral local server)::

    python -m kairos.training.flow --config loop.toml

or schedule it with Prefect (its scheduler instead of the loop's)::

    from kairos.training.flow import retrain_round
    retrain_round.serve(name="kairos-gbpusd", cron="0 */6 * * *", parameters={"config": "loop.toml"})
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from kairos.training.loop import LoopConfig, run_round

T = TypeVar("T")


def prefect_step(name: str, fn: Callable[..., T], *args: Any) -> T:
    """The loop's step runner for Prefect: the step as a task (never cached: every round is new)."""
    t = task(name=f"kairos-{name}", cache_policy=NO_CACHE, persist_result=False)(fn)
    return t(*args)


def _hook(spec: str) -> Callable[[Path], None] | None:
    """``module:function``, called with the run directory between training and the backtest."""
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise TypeError(f"after_train {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]


@flow(name="kairos-retrain-round", persist_result=False)
def retrain_round(config: str, after_train: str = "") -> dict[str, Any]:
    """One retraining round of the loop configured in ``config`` (a ``kairos-train loop`` TOML file).
    ``after_train`` names a ``module:function`` hook (``run_round``'s ``after_train``)."""
    cfg = LoopConfig.load(Path(config))
    cfg.dir.mkdir(parents=True, exist_ok=True)
    return run_round(cfg, after_train=_hook(after_train), step=prefect_step).to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kairos.training.flow", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="The loop's TOML file.")
    args = p.parse_args(argv)
    res = retrain_round(args.config)
    print(json.dumps(res, default=str))
    return 0 if res["status"] == "registered" else 3


if __name__ == "__main__":
    sys.exit(main())
