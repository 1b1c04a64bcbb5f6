"""The cluster fault suite runs under `make chaos-cluster` (part of `make test`), which sets
KAIROS_CHAOS=1 and names the reliability JSON; a plain `pytest` run skips it, visibly, so the
heavy scenarios do not run twice in `make test`."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("KAIROS_CHAOS") == "1":
        return
    skip = pytest.mark.skip(reason="chaos suite: run by `make chaos-cluster` (KAIROS_CHAOS=1)")
    for item in items:
        if "chaos" in item.nodeid.split("/"):
            item.add_marker(skip)
