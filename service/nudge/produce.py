"""`nudge produce PATH`: publish a JSONL file of events to the events topic, keyed by `user_id`.

Each line is checked with the processor's own decoder first. A line that is not a valid event is
reported (`FILE:LINE: reason: message`, as `nudge simulate` does) and skipped, the valid ones are
still published, and the exit code says whether any was skipped. `--send-invalid` publishes those
lines too, byte for byte (unkeyed when they have no `user_id`), so they reach the processor and its
dead-letter topic as an app's bad records would: the demo shows dead letters that way.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from nudge.admin import ensure_topics
from nudge.codec import decode_event
from nudge.commandline import FAILURE, KAFKA_HINT, USAGE, error, not_empty, number, reason
from nudge.errors import InvalidEvent
from nudge.settings import Settings
from nudge.topics import Topics

MAX_REPORTED: Final = 20  # invalid lines listed on stderr; the rest are counted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="JSONL file of events ('-' for standard input)")
    parser.add_argument(
        "--rate",
        type=number(float, at_least=0.0),
        default=0.0,
        help="events per second (0: as fast as possible)",
    )
    parser.add_argument("--topic", type=not_empty, help="publish here instead of the events topic")
    parser.add_argument(
        "--send-invalid",
        action="store_true",
        help="publish the lines that are not valid events too, byte for byte, so that they "
        "reach the dead-letter topic as an app's bad records would",
    )
    parser.epilog = (
        "Each line is checked as the processor will check it. A line that is not a valid event "
        "is reported on stderr as FILE:LINE: reason: message and skipped (unless --send-invalid); "
        "the valid lines are still published. Exit code: 0 all published; 2 some lines were "
        "skipped, or the file cannot be read; 1 Kafka failed."
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    from_stdin = str(args.path) == "-"
    name = "<stdin>" if from_stdin else str(args.path)
    try:
        source: BinaryIO = sys.stdin.buffer if from_stdin else args.path.open("rb")
    except OSError as err:
        error("produce", f"cannot read {name}: {reason(err, name)}", hint="check the PATH argument")
        return USAGE
    # aiokafka logs each failed connection attempt; the one line below says what it means.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    target = args.topic or Topics(settings.topic_prefix).events
    checked = CheckedLines(name, send_invalid=args.send_invalid)
    try:
        with source:
            count = asyncio.run(
                publish(settings, checked.lines(source), topic=target, rate=args.rate)
            )
    except KafkaConnectionError:
        error(
            "produce",
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}",
            hint=KAFKA_HINT,
        )
        return FAILURE
    except KafkaError as err:
        error("produce", f"publishing to {target} failed: {err!r}", hint="see the broker's log")
        return FAILURE
    except OSError as err:
        error("produce", f"cannot read {name}: {reason(err, name)}")
        return USAGE
    checked.report_rest()
    events = _plural(count, "event")
    if not checked.invalid:
        print(f"published {events} to {target}")
        return 0
    if args.send_invalid:
        print(
            f"published {_plural(count, 'record')} to {target}, {checked.invalid} of them not "
            "valid events (the processor dead-letters them)"
        )
        return 0
    invalid = _plural(checked.invalid, "line")
    print(f"published {events} to {target}; skipped {invalid} that are not valid events")
    return USAGE


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class CheckedLines:
    """The lines of a JSONL file to publish, each checked with the processor's decoder; the
    invalid ones are reported on stderr (the first `MAX_REPORTED`) and counted."""

    def __init__(self, name: str, *, send_invalid: bool) -> None:
        self.name = name
        self.send_invalid = send_invalid
        self.invalid = 0

    def lines(self, source: Iterable[bytes]) -> Iterator[bytes]:
        action = "sent anyway, it will be dead-lettered" if self.send_invalid else "skipped"
        for line_no, raw in enumerate(source, start=1):
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                decode_event(line)
            except InvalidEvent as err:
                self.invalid += 1
                if self.invalid <= MAX_REPORTED:
                    where = f"{self.name}:{line_no}"
                    print(f"{where}: {err.reason}: {err} ({action})", file=sys.stderr)
                if not self.send_invalid:
                    continue
            yield line

    def report_rest(self) -> None:
        if self.invalid > MAX_REPORTED:
            more = self.invalid - MAX_REPORTED
            print(f"... and {more} more lines that are not valid events", file=sys.stderr)


def key_of(line: bytes) -> bytes | None:
    """The record key for one JSONL line: its `user_id`, when it has one."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    user_id = data.get("user_id") if isinstance(data, dict) else None
    return user_id.encode() if isinstance(user_id, str) else None


async def publish(
    settings: Settings, lines: Iterable[bytes], *, topic: str | None = None, rate: float = 0.0
) -> int:
    target = topic or Topics(settings.topic_prefix).events
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5, acks="all"
    )
    await producer.start()
    count = 0
    started = time.monotonic()
    try:
        for line in lines:
            if not line.strip():
                continue
            await producer.send(target, line, key=key_of(line))
            count += 1
            if rate > 0:
                ahead = count / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return count
