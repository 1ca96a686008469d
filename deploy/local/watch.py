"""Show what the demo did: every mail the SMTP sink stores, and every dead-lettered record.

Usage: watch.py MAILDIR [--seconds N]. Prints a line per new .eml (time, recipient, journey,
subject, file) and per dead letter (reason, message), until interrupted or N seconds pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from nudge.deadletter import read_headers
from nudge.settings import Settings
from nudge.topics import Topics

BOLD, DIM, RESET = "\033[1m", "\033[2m", "\033[0m"


def print_new_mail(maildir: Path, seen: set[Path]) -> None:
    for path in sorted(maildir.glob("**/*.eml"), key=lambda p: p.stat().st_mtime):
        if path in seen:
            continue
        seen.add(path)
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        print(
            f"{BOLD}mail{RESET}  {time.strftime('%H:%M:%S')}  to {message['To']}\n"
            f"      [{message['X-Nudge-Journey']}] {message['Subject']}\n"
            f"      {DIM}{path}{RESET}",
            flush=True,
        )


async def watch_mail(maildir: Path, deadline: float) -> None:
    seen: set[Path] = set()
    while time.monotonic() < deadline:
        await asyncio.to_thread(print_new_mail, maildir, seen)
        await asyncio.sleep(0.3)


async def watch_dead_letters(settings: Settings, deadline: float) -> None:
    topic = Topics.dead_letter(Topics(settings.topic_prefix).events)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    headers = read_headers(record.headers)
                    reason = headers.get("nudge-error-reason")
                    detail = headers.get("nudge-error-message")
                    print(f"{BOLD}dead letter{RESET}  {topic}: {reason} — {detail}", flush=True)
    finally:
        await consumer.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("maildir", type=Path)
    parser.add_argument("--seconds", type=float, default=10**9)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    await asyncio.gather(
        watch_mail(args.maildir, deadline), watch_dead_letters(Settings.from_env(), deadline)
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
