"""The JetStream settings of the nats-servers the tests start: those of deploy/nats/nats.conf.

Left to nats-server's default, the file store's limit is 75% of the disk's free space, and the
deployed streams reserve their max_bytes against it (13 GiB in all: deploy/nats/streams/). On a host
with under ~19 GB free, applying them then fails with "insufficient storage resources available",
whatever the tests write (a few MB). The deployed server sets the limit; the test servers take the
same.
"""

from __future__ import annotations

import re
from pathlib import Path

NATS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "nats.conf"


def max_file_store() -> str:
    """deploy/nats/nats.conf's ``max_file_store`` (e.g. ``16GB``)."""
    m = re.search(r"^\s*max_file_store:\s*(\S+)\s*$", NATS_CONF.read_text(), re.MULTILINE)
    assert m, f"{NATS_CONF} sets no max_file_store"
    return m.group(1)


def jetstream_block(store_dir: Path | str) -> str:
    """A nats-server config's ``jetstream`` block storing in store_dir, limited as deployed."""
    return f'jetstream {{ store_dir: "{store_dir}", max_file_store: {max_file_store()} }}\n'
