"""The cluster fault suite runs under `make chaos-cluster` (part of `make test`), which sets
KAIROS_CHAOS=1 and names the reliability JSON. A plain `pytest` run does not collect it (not a skip:
the heavy scenarios run once in `make test`, in their own step)."""

from __future__ import annotations

import os
from pathlib import Path


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    if os.environ.get("KAIROS_CHAOS") == "1":
        return None
    return collection_path.suffix == ".py" and collection_path.name.startswith("test_")
