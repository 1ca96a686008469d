"""`nudge produce PATH`: publish a JSONL file of events to the events topic, keyed by `user_id`.

Lines are published byte for byte, so a malformed line reaches the processor (and its dead-letter
topic) exactly as an app's bad record would; lines that are not JSON are sent without a key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from nudge.admin import ensure_topics
from nudge.settings import Settings
from nudge.topics import Topics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="JSONL file of events ('-' for standard input)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="events per second (0: as fast as possible)"
    )
    parser.add_argument("--topic", help="publish here instead of the events topic")


def main(args: argparse.Namespace, settings: Settings) -> int:
    lines = sys.stdin.buffer if str(args.path) == "-" else args.path.open("rb")
    with lines:
        count = asyncio.run(
            publish(
                settings, (line.rstrip(b"\r\n") for line in lines), topic=args.topic, rate=args.rate
            )
        )
    print(f"published {count} events to {args.topic or Topics(settings.topic_prefix).events}")
    return 0


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
