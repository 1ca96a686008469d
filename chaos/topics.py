"""Reading back what Nudge wrote: a topic from its beginning to its end at the time of the call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from nudge.produce import key_of


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    timestamp_ms: int = 0  # the producer's create time


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    """Every record of `topic` (no consumer group; nothing is committed). Missing topic: []."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        for _ in range(50):  # without a group, the assignment follows the topic's metadata
            if consumer.assignment():
                break
            await asyncio.sleep(0.1)
        assigned = sorted(consumer.assignment())
        if not assigned:
            return []
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        out: list[Record] = []
        remaining = {tp for tp in assigned if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
                        out.append(
                            Record(
                                key=record.key,
                                value=record.value,
                                headers=headers,
                                timestamp_ms=record.timestamp,
                            )
                        )
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


class Publisher:
    """Publishes the log at a steady rate, keyed like `nudge produce`; counts progress; can
    pause (the harness pauses it while it restarts the broker: apps' own retries are not ours)."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], rate: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.lines = lines
        self.rate = rate
        self.sent = 0
        self.running = asyncio.Event()
        self.running.set()
        self.done = asyncio.Event()
        self.quiet = asyncio.Event()  # set while paused with everything sent acknowledged

    @property
    def progress(self) -> float:
        return self.sent / max(1, len(self.lines))

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=5,
            acks="all",
            enable_idempotence=True,
            max_request_size=1 << 20,
            request_timeout_ms=120_000,
        )
        await producer.start()
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            paused_for = 0.0
            pending: list[asyncio.Future[object]] = []
            for line in self.lines:
                if not self.running.is_set():
                    await asyncio.gather(*pending)
                    pending.clear()
                    await producer.flush()
                    paused = loop.time()
                    self.quiet.set()
                    await self.running.wait()
                    self.quiet.clear()
                    paused_for += loop.time() - paused
                pending.append(await producer.send(self.topic, line, key=key_of(line)))
                self.sent += 1
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
                ahead = self.sent / self.rate - (loop.time() - started - paused_for)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.gather(*pending)
            await producer.flush()
        finally:
            await producer.stop()
            self.done.set()

    async def pause(self) -> None:
        """Stop sending and wait until everything sent so far is acknowledged."""
        self.running.clear()
        quiet = asyncio.ensure_future(self.quiet.wait())
        finished = asyncio.ensure_future(self.done.wait())
        await asyncio.wait((quiet, finished), return_when=asyncio.FIRST_COMPLETED)
        quiet.cancel()
        finished.cancel()

    def resume(self) -> None:
        self.running.set()
