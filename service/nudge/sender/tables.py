"""Following compacted topics into memory: the ledger, suppressions and contact policies.

One group-less consumer reads every partition of the given topics from the beginning at start
and then tails them. `caught_up()` waits until everything written before the call has been
applied — the sender calls it at start and after each partition assignment, so it never decides
on a command with a view older than the moment it took the command over. A record the callback
cannot read (`NudgeError`) is logged with its topic, partition and offset and skipped; the view
keeps what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from nudge.errors import NudgeError

Apply = Callable[[str, bytes | None], None]
log = structlog.get_logger("nudge.sender.tables")


class TableFollower:
    """Applies every record of some compacted topics to a callback per topic, in order."""

    def __init__(self, bootstrap_servers: str, handlers: Mapping[str, Apply]) -> None:
        self._handlers = dict(handlers)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            # The ledger topic receives two records per mail sent (by this process too), so a
            # fetch that returns on the first new byte comes back after every produce batch:
            # hundreds of fetch round trips a second, each decoded in pure Python here and served
            # by the same broker. Waiting for 64 kB or 100 ms caps it at ~10 a second;
            # this process records its own keys in memory directly, and other instances' keys
            # arrive at most 100 ms later (caught_up() waits for them at every assignment).
            fetch_min_bytes=64 * 1024,
            fetch_max_wait_ms=100,
        )
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self.applied = 0

    async def start(self) -> None:
        await self._consumer.start()
        for topic in self._handlers:
            partitions = None
            for _ in range(50):
                # The consumer's own metadata only covers subscribed topics; ask for all.
                cluster = await self._consumer._client.fetch_all_metadata()
                partitions = cluster.partitions_for_topic(topic)
                if partitions:
                    break
                await asyncio.sleep(0.1)
            if not partitions:
                raise RuntimeError(f"topic {topic} has no partitions; was it created?")
            self._partitions += [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._task = asyncio.create_task(self._run(), name="table-follower")

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batches.items():
                self.applied += apply_records(self._handlers[tp.topic], tp, records)

    async def caught_up(self, limit: float = 60.0) -> None:
        """Return once every record that existed when called has been applied."""
        ends = await self._consumer.end_offsets(self._partitions)
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            behind = [tp for tp in self._partitions if await self._consumer.position(tp) < ends[tp]]
            if not behind:
                return
            if self._task is not None and self._task.done():
                self._task.result()  # re-raise what stopped the follower
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"state topics not caught up after {limit}s: {behind}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._consumer.stop()


def apply_records(handler: Apply, tp: TopicPartition, records: Iterable[Any]) -> int:
    """Apply keyed records in order; one the handler cannot read (`NudgeError`) is logged with
    where it is and skipped. Returns how many keyed records were taken."""
    taken = 0
    for record in records:
        if record.key is None:
            continue
        try:
            handler(record.key.decode("utf-8", "replace"), record.value)
        except NudgeError as err:  # bad data in the record: skip it, keep following
            log.warning(
                "sender.unreadable_state_record",
                topic=tp.topic,
                partition=tp.partition,
                offset=record.offset,
                error=str(err),
            )
        taken += 1
    return taken
