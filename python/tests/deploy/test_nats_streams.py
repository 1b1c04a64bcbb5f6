"""The JetStream stream definitions (deploy/nats/streams) applied by kairos-streams to a real
nats-server: every subject of the cross-component agreement lands in exactly one stream with the
retention the definition says, re-applying is idempotent, and bad definitions are refused by name."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import nats
import pytest

REPO = Path(__file__).resolve().parents[3]
STREAMS = REPO / "deploy" / "nats" / "streams"

# Subjects from docs/briefs interfaces (collector: md, bar, pred; inference: signal).
SUBJECTS = {
    "kairos.md.EURUSD": "KAIROS_MD",
    "kairos.bar.M1.EURUSD": "KAIROS_BARS",
    "kairos.bar.H1.GBPUSD": "KAIROS_BARS",
    "kairos.pred.EURUSD": "KAIROS_PRED",
    "kairos.signal.EURUSD": "KAIROS_SIGNALS",
}


def run_streams(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "kairos-streams"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_apply_creates_every_stream_then_is_idempotent(deploy_bin: Path, nats_server: str) -> None:
    first = run_streams(deploy_bin, "-server", nats_server, "-dir", str(STREAMS), "-timeout", "20s")
    assert first.returncode == 0, first.stderr
    names = sorted(p.stem for p in STREAMS.glob("*.json"))
    assert first.stdout.splitlines() == [f"{n}: created" for n in names]

    again = run_streams(deploy_bin, "-server", nats_server, "-dir", str(STREAMS), "-timeout", "20s")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"{n}: unchanged" for n in names]


def test_every_agreed_subject_is_stored_in_its_stream_with_the_defined_retention(
    deploy_bin: Path, nats_server: str
) -> None:
    applied = run_streams(deploy_bin, "-server", nats_server, "-dir", str(STREAMS))
    assert applied.returncode == 0, applied.stderr

    async def publish_and_inspect() -> dict[str, tuple[int, float, int, str]]:
        nc = await nats.connect(nats_server, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5)
            for subject in SUBJECTS:
                ack = await js.publish(subject, b"\x08\x01")
                assert ack.stream == SUBJECTS[subject], subject
            out = {}
            for name in sorted(set(SUBJECTS.values())):
                info = await js.stream_info(name)
                cfg = info.config
                out[name] = (
                    info.state.messages,
                    float(cfg.max_age or 0),
                    int(cfg.max_bytes or 0),
                    str(getattr(cfg.storage, "value", cfg.storage)),
                )
            return out
        finally:
            await nc.close()

    got = asyncio.run(asyncio.wait_for(publish_and_inspect(), timeout=30))
    for name, (messages, max_age_s, max_bytes, storage) in got.items():
        spec = json.loads((STREAMS / f"{name}.json").read_text())
        assert messages == list(SUBJECTS.values()).count(name)
        assert max_age_s == pytest.approx(_seconds(spec["max_age"]))
        assert max_bytes == spec["max_bytes"]
        assert storage == spec["storage"] == "file"


def test_changed_definition_updates_the_live_stream(
    deploy_bin: Path, nats_server: str, tmp_path: Path
) -> None:
    defs = tmp_path / "streams"
    shutil.copytree(STREAMS, defs)
    assert run_streams(deploy_bin, "-server", nats_server, "-dir", str(defs)).returncode == 0
    md = json.loads((defs / "KAIROS_MD.json").read_text())
    md["max_age"] = "48h"
    (defs / "KAIROS_MD.json").write_text(json.dumps(md))

    out = run_streams(deploy_bin, "-server", nats_server, "-dir", str(defs))

    assert out.returncode == 0, out.stderr
    assert "KAIROS_MD: updated" in out.stdout.splitlines()
    assert "KAIROS_BARS: unchanged" in out.stdout.splitlines()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_agee": "1h"}, 'unknown field "max_agee"'),
        ({"max_age": 3600}, "max_age must be a duration string"),
        ({"max_age": "1 hour"}, 'max_age: invalid duration "1 hour"'),
        ({"subjects": []}, "has no subjects"),
        ({"max_age": "0s", "max_bytes": -1, "max_msgs": -1}, "has no retention bound"),
        ({"name": "OTHER"}, 'stream name "OTHER" must match the file name'),
        ({"subjects": ["kairos.md.EURUSD"], "name": "KAIROS_MD"}, None),  # renamed file below
    ],
)
def test_bad_definitions_are_refused_naming_the_file(
    deploy_bin: Path, tmp_path: Path, change: dict[str, object], message: str | None
) -> None:
    defs = tmp_path / "streams"
    shutil.copytree(STREAMS, defs)
    path = defs / "KAIROS_MD.json"
    spec = json.loads(path.read_text())
    spec.update(change)
    if message is None:
        # A second stream claiming a subject that KAIROS_MD already covers.
        spec["name"] = "KAIROS_MD_EURUSD"
        path = defs / "KAIROS_MD_EURUSD.json"
        message = 'overlaps "kairos.md.>" of KAIROS_MD'
    path.write_text(json.dumps(spec))

    out = run_streams(deploy_bin, "-check", "-dir", str(defs))

    assert out.returncode == 1
    assert str(path) in out.stderr or "KAIROS_MD" in out.stderr
    assert message in out.stderr, out.stderr


def test_check_mode_accepts_the_committed_definitions(deploy_bin: Path) -> None:
    out = run_streams(deploy_bin, "-check", "-dir", str(STREAMS))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(list(STREAMS.glob("*.json")))


def test_unreachable_server_fails_within_the_timeout(deploy_bin: Path) -> None:
    from kairos.stack.loopback import free_port

    out = run_streams(
        deploy_bin, "-server", f"nats://127.0.0.1:{free_port()}", "-dir", str(STREAMS), "-timeout", "1s"
    )
    assert out.returncode == 1
    assert "connect nats://127.0.0.1" in out.stderr


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return float(duration[:-1]) * units[duration[-1]]
