"""Encodes the golden vectors: proto/testdata/golden/<case>.txtpb -> <case>.binpb.

Run by `make golden` when a vector is added or changed; the bytes are then committed and every
language's test decodes and re-encodes them. Each .txtpb names its message type in a
`# proto-message: <full name>` header (the usual text-format convention).
"""

import sys
from pathlib import Path

from google.protobuf import message_factory, text_format
from google.protobuf.descriptor_pool import Default as default_pool

import kairos.bridge.v1.bridge_pb2
import kairos.marketdata.v1.marketdata_pb2  # noqa: F401

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "proto" / "testdata" / "golden"


def message_name(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# proto-message:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"{path}:1: no '# proto-message:' header")


def encode(path: Path) -> bytes:
    cls = message_factory.GetMessageClass(default_pool().FindMessageTypeByName(message_name(path)))
    try:
        msg = text_format.Parse(path.read_text(encoding="utf-8"), cls())
    except text_format.ParseError as e:
        raise SystemExit(f"{path}:{e.GetLine()}: {e}") from None
    return msg.SerializeToString(deterministic=True)


def main() -> int:
    paths = sorted(GOLDEN_DIR.glob("*.txtpb"))
    for path in paths:
        path.with_suffix(".binpb").write_bytes(encode(path))
    print(f"encoded {len(paths)} golden vectors in {GOLDEN_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
