"""`nudge produce` against the real broker: valid lines are published keyed by user, invalid ones
are reported by line and skipped (exit code 2), or published too when asked (exit code 0)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import nudge
from nudge.testkafka import read_topic
from nudge.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SERVICE = Path(nudge.__file__).resolve().parent.parent
GOOD = (
    b'{"event_id":"e-1","type":"user.logged_in","user_id":"u-1",'
    b'"occurred_at":"2026-11-22T10:15:00+09:00"}'
)
SCRIPT = "import sys; from nudge.cli import main; sys.exit(main())"
MISSING_USER = b'{"event_id":"e-3","type":"user.logged_in","occurred_at":"2026-11-22T10:15:00Z"}'


def produce(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n".join([GOOD, b"{not json", MISSING_USER]) + b"\n")
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", SCRIPT, "produce", *flags, str(log)],
        env={
            "PYTHONPATH": str(SERVICE),
            "PATH": "",
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NUDGE_TOPIC_PREFIX": topic_prefix,
            "NUDGE_TOPIC_PARTITIONS": "2",
        },
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_invalid_lines_are_reported_and_skipped_and_the_valid_ones_published(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    done = produce(tmp_path, kafka_bootstrap, topic_prefix)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["malformed_json", "missing_field"]
    assert lines[0].startswith(f"{tmp_path / 'events.jsonl'}:2: ")
    events = Topics(topic_prefix).events
    assert (
        done.stdout == f"published 1 event to {events}; skipped 2 lines that are not valid events\n"
    )
    records = asyncio.run(read_topic(kafka_bootstrap, events, at_least=1))
    assert [(r.key, r.value) for r in records] == [(b"u-1", GOOD)]


def test_with_send_invalid_every_line_is_published_as_written(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    done = produce(tmp_path, kafka_bootstrap, topic_prefix, "--send-invalid")
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) == 2
    records = asyncio.run(read_topic(kafka_bootstrap, Topics(topic_prefix).events, at_least=3))
    assert sorted((r.key or b"", r.value) for r in records) == sorted(
        [(b"u-1", GOOD), (b"", b"{not json"), (b"", MISSING_USER)]
    )
