"""kairos.bridge.client.Status and the KB_* status codes of kairos_bridge.h cannot drift apart.

Every status code of the header (the "Status codes" block: KB_OK, KB_EMPTY, KB_PARTIAL, KB_E_*) must be
a Status member of the same name (KB_ dropped) and value, and every Status member must be in the header.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kairos.bridge.client import Status

REPO = Path(__file__).resolve().parents[3]
HEADER = (REPO / "cpp/mt5_bridge/include/kairos_bridge.h").read_text()


def header_status_codes(text: str) -> dict[str, int]:
    """The #defines of the header's status-code block, from its heading to the first blank line."""
    block = re.search(r"/\* -+ Status codes -+ \*/\n(.*?)\n\s*\n", text, re.DOTALL)
    assert block, "no 'Status codes' block in kairos_bridge.h"
    codes = {}
    for line in block.group(1).splitlines():
        if line.lstrip().startswith("/*"):
            continue  # a comment line inside the block
        m = re.fullmatch(r"#define KB_(\w+)\s+\(?(-?\d+)\)?\s*(?:/\*.*\*/)?\s*", line)
        assert m, f"unexpected line in the status block: {line!r}"
        codes[m.group(1)] = int(m.group(2))
    return codes


def python_status_codes() -> dict[str, int]:
    return {member.name: int(member.value) for member in Status}


def test_the_header_block_holds_every_status_code() -> None:
    codes = header_status_codes(HEADER)
    assert {"OK", "EMPTY", "PARTIAL", "E_QUEUE_FULL", "E_CONNECT", "E_PEER_ERROR"} <= set(codes)
    # Nothing shaped like a status code lives outside the block.
    everywhere = set(re.findall(r"#define KB_((?:OK|EMPTY|PARTIAL|COMMAND|E_\w+))\b", HEADER))
    assert everywhere == set(codes)
    assert len(set(codes.values())) == len(codes), "two status codes share a value"


@pytest.mark.parametrize(("name", "value"), sorted(header_status_codes(HEADER).items()))
def test_every_header_status_is_a_python_status_with_the_same_value(name: str, value: int) -> None:
    assert name in Status.__members__, f"KB_{name} ({value}) is missing from kairos.bridge.client.Status"
    assert Status[name] == value, f"KB_{name} is {value} in the header, {int(Status[name])} in Python"


@pytest.mark.parametrize(("name", "value"), sorted(python_status_codes().items()))
def test_every_python_status_is_in_the_header_with_the_same_value(name: str, value: int) -> None:
    codes = header_status_codes(HEADER)
    assert name in codes, f"Status.{name} ({value}) has no KB_{name} in kairos_bridge.h"
    assert codes[name] == value


def test_the_parser_sees_a_drifted_code() -> None:
    """Guards the test itself: a changed value and an added code must both be noticed."""
    changed = HEADER.replace("#define KB_E_QUEUE_FULL (-7)", "#define KB_E_QUEUE_FULL (-70)")
    added = HEADER.replace(
        "#define KB_E_PEER_ERROR (-24)", "#define KB_E_PEER_ERROR (-24)\n#define KB_E_NEW (-25)"
    )
    assert changed != HEADER and added != HEADER
    assert header_status_codes(changed) != python_status_codes()
    assert set(header_status_codes(added)) - set(python_status_codes()) == {"E_NEW"}
    assert header_status_codes(HEADER) == python_status_codes()
