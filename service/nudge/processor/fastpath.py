"""What Faust does per record, done per batch: the state table's writes and the producer path.

Measured (docs/processor.md, Performance: "Where a worker's time went"), a worker spent more CPU
in Faust's per-record machinery than in the engine. Six pieces of it are replaced here. The
first two only under `at_least_once` with RocksDB (under `exactly_once` every record must go
through Faust's transactional path, so the portable `kafka.TableStore` and `kafka.KafkaSink`
stay in use); `nudge processor --faust-paths` turns all six off, for comparisons:

- `DirectTableStore` reads and writes the RocksDB database of the record's partition directly and
  produces the changelog records itself. Through the `Table` API each write costs a
  `FutureMessage`, a trip through the producer buffer, sensor calls, a callback and one extra
  RocksDB write (the changelog offset) per key, and each read two database lookups. Here the
  offset is written once per partition and batch, when the batch's last changelog record is
  acknowledged. The values, keys, partitions and the changelog topic are exactly Faust's, so
  Faust's recovery, standby replicas and `table.items()` read them as before.
- `DirectSink` hands outputs straight to Faust's producer (no `Topic.send` per record).
- `BatchDrainConsumer` hands each fetched batch of records to the streams under one
  `wait_first` (wait for the delivery, or stop it when a rebalance suspends the flow), where
  Faust's consumer starts four tasks and an `asyncio.wait` for every record.
- `take_batches` (also at-least-once only) gives the agent its batches straight from the stream's
  channel queue, where `Stream.take_events` runs the stream's whole per-record iteration (a yield
  to the event loop, the buffer processor, the current-event context variable, sensors) and then
  acks each record through the stream. It keeps what that iteration guarantees: a record consumed
  before a rebalance (another consumer generation) or while the flow is suspended is dropped
  untracked, as Faust's iterator drops it; every other record is tracked as unacked (Faust's
  rebalance waits for those) and acked only after the agent has handled its batch.
- `RawSchema` turns a consumed record into Faust's `Event` without the serializer registry's
  four lookups and two codec calls per record, and without looking the `Event` class up in
  Faust's settings registry each time: the processor's topics carry raw bytes, and the
  `raw` codec returns them unchanged (the key and value are the message's own, `None` stays
  `None`, as Faust's `Schema.compile` gives for `raw`).
- `LeanMonitor` keeps the one statistic Faust itself reads (when a partition last yielded an
  event, for its stuck-stream warning) and drops the per-record bookkeeping nobody reads (the
  processor does not expose Faust's sensor; /metrics is `nudge.metrics`).

The changelog records go to the same producer as everything else, and Faust flushes that producer
before it commits consumer offsets, so a committed offset never precedes the changelog of the
state it led to. A changelog record the broker refuses is an infrastructure failure: `on_failure`
stops the worker (the records are processed again after the restart).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from time import monotonic
from typing import Any, Final, cast

import faust
import structlog
from aiokafka.errors import IllegalStateError
from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.futures import notify

from nudge.deadletter import Source, headers
from nudge.errors import PermanentError
from nudge.processor.ports import Output, Record, Write
from nudge.topics import Topics

log = structlog.get_logger("nudge.processor")

# The Faust internals below (the consumer's drain loop, the RocksDB store's per-partition databases,
# `set_persisted_offset`) were read in this release; another one runs Faust's own paths.
FAST_PATHS_FAUST_VERSION: Final = "0.15.3"
# Seconds a fetch waits for records while some partitions are set aside with full buffers.
BUFFERED_FETCH_WAIT: Final = 0.05


def fast_paths_fit(installed: str) -> bool:
    """Whether the installed faust-streaming is the release the fast paths were written for."""
    return installed == FAST_PATHS_FAUST_VERSION


class DirectTableStore:
    """The state table's RocksDB partitions as a `StateStore`, changelogged per batch."""

    def __init__(
        self, table: Any, app: faust.App, on_failure: Callable[[BaseException], None]
    ) -> None:
        self.table = table
        self.app = app
        self.on_failure = on_failure
        self.changelog: str = table.changelog_topic.get_topic_name()
        self._tps: dict[int, TP] = {}

    def get(self, key: bytes, record: Record) -> bytes | None:
        value: bytes | None = self.table.data._db_for_partition(record.partition).get(key)
        return value

    async def write(self, writes: Sequence[Write]) -> None:
        store = self.table.data
        send = self.app.producer.send
        changelog = self.changelog
        check = self._check
        last: dict[int, asyncio.Future[Any]] = {}
        for key, value, record in writes:
            partition = record.partition
            db = store._db_for_partition(partition)
            if value is None:
                db.delete(key)
            else:
                db.put(key, value)
            sent = cast(
                "asyncio.Future[Any]", await send(changelog, key, value, partition, None, None)
            )
            sent.add_done_callback(check)
            last[partition] = sent
        for partition, sent in last.items():
            sent.add_done_callback(partial(self._persisted, partition))

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        items: Iterable[tuple[bytes, bytes]] = self.table.items()
        return items

    def _check(self, sent: asyncio.Future[Any]) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            self.on_failure(sent.exception() or RuntimeError("changelog record not written"))

    def _persisted(self, partition: int, sent: asyncio.Future[Any]) -> None:
        # What Faust's per-record changelog callback does, once per partition and batch: remember
        # how far the local database is covered by the changelog, so that a restart reads only
        # the changelog after it.
        if sent.cancelled() or sent.exception() is not None:
            return
        tp = self._tps.get(partition)
        if tp is None:
            tp = self._tps[partition] = TP(self.changelog, partition)
        if partition in self.table.data._dbs:  # not revoked meanwhile
            self.table.data.set_persisted_offset(tp, sent.result().offset)


class DirectSink:
    """Faust's producer as a `Sink`, without `Topic.send`'s per-record futures and sensors."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(self, outputs: Sequence[Output]) -> Awaitable[None]:
        send = self.app.producer.send
        pending = [await send(out.topic, out.key, out.value, None, None, None) for out in outputs]
        return _all(pending)

    async def dead_letter(
        self, record: Record, error: PermanentError, failed_at: datetime
    ) -> Awaitable[None]:
        source = Source(topic=record.topic, partition=record.partition, offset=record.offset)
        sent = await self.app.producer.send(
            Topics.dead_letter(record.topic),
            record.key,
            record.value,
            None,
            None,
            headers(error, source, failed_at=failed_at.isoformat()),
        )
        return _all([sent])


async def _all(pending: Sequence[Awaitable[Any]]) -> None:
    for sent in pending:
        await sent


async def take_batches(stream: Any, max_: int, within: float) -> AsyncIterator[list[Any]]:
    """Faust events of `stream`'s channel in batches of up to `max_`, waiting at most `within`
    seconds after a batch's first record for it to fill (module docstring).

    A batch's records are acked when the caller asks for the next batch, not when the generator
    is closed: a batch interrupted by a shutdown or a crash stays uncommitted (Faust's
    `take_events` acks it in a `finally`). Records the caller removed from the batch it was
    handed are neither acked nor tracked any longer: it reads them again.
    """
    app = stream.app
    consumer = app.consumer
    queue = stream.channel.queue
    get, get_nowait, empty = queue.get, queue.get_nowait, queue.empty
    flow_active = app.flow_control.is_active
    acking_topics = app.topics.acking_topics
    add_unacked = consumer.unacked.add
    discard_unacked = consumer.unacked.discard
    inbound = app.monitor.stream_inbound_time
    loop = asyncio.get_running_loop()
    await stream.maybe_start()
    try:
        while not stream.should_stop:
            items = [await get()]
            deadline = loop.time() + within
            while len(items) < max_:
                if empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        async with asyncio.timeout(remaining):
                            items.append(await get())
                    except TimeoutError:
                        break
                else:
                    items.append(get_nowait())
            events = []
            generation = app.consumer_generation_id
            active = flow_active()
            now = monotonic()
            for event in items:
                message = event.message
                if not active or message.generation_id != generation:
                    continue  # consumed before a rebalance: Faust's iterator drops it too
                if message.topic in acking_topics and not message.tracked:
                    message.tracked = True
                    add_unacked(message)
                inbound[message.tp] = now
                events.append(event)
            if not events:
                continue
            batch = events.copy()
            yield events
            if len(events) != len(batch):
                # The caller removed records it will read again (offsetwatch.py): untracked,
                # never acked, so no commit passes them and no rebalance waits for them.
                kept = {id(event) for event in events}
                for event in batch:
                    if id(event) not in kept:
                        discard_unacked(event.message)
                notify(consumer._waiting_for_ack)
            for event in events:
                event.ack()
    except StopAsyncIteration:
        # Faust throws it into the channel's queue to stop an actor (a shutdown, a revoked
        # isolated partition); its own iterator ends there, and so do the batches. Raised
        # through an async generator it would become a RuntimeError and crash the agent.
        return
    finally:
        stream.channel.on_stop_iteration()  # as Faust's iterator ends (isolated partitions)


class RawSchema(faust.Schema[bytes, bytes]):
    """Raw bytes keys and values, decoded without the serializer registry (module docstring)."""

    def __init__(self) -> None:
        super().__init__(key_serializer="raw", value_serializer="raw")

    def compile(self, app: Any, **kwargs: Any) -> Any:
        # kwargs are the decode-error callbacks: the raw codec never raises, so none is called.
        # What `app.create_event` does, with the Event class looked up once instead of through
        # Faust's settings registry for every record.
        event_class = app.conf.Event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return event_class(app, message.key, message.value, message.headers, message)

        return decode


class LeanMonitor(Monitor):
    """Faust's monitor without the per-record statistics (see the module docstring)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        self.stream_inbound_time[tp] = monotonic()
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> Any:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_table_del(self, table: Any, key: Any) -> None:
        return None


def committed_offset(consumer: Any, topic: str, partition: int) -> int | None:
    """The group's committed offset of a partition as Faust's consumer last learnt it (None:
    none): where it seeks the partition after an assignment."""
    offset: int | None = consumer._committed_offset.get(TP(topic, partition))
    return offset


def known_absent(consumer: Any, topic: str, partition: int, start: int, end: int) -> bool:
    """Whether Faust's consumer knows offsets `start`..`end` (excluded) are not in the log: the
    gaps its drain recorded when a fetch stepped over offsets (transaction markers, compaction)."""
    gaps = consumer._gap.get(TP(topic, partition))
    if not gaps:
        return False
    covered = start
    for interval in sorted(gaps.overlap(start, end)):
        if interval.begin > covered:
            return False
        covered = max(covered, interval.end)
    return covered >= end


class BatchDrainConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with one `wait_first` per fetched batch instead of per record,
    and no one-second sleep when the streams' buffers are full (`_wait_next_records`).

    `_drain_messages` is Faust's (faust-streaming 0.15.3, transport/consumer.py) with one change:
    the delivery of a fetch's records runs inside a single `wait_first(..., suspend_flow.wait())`.
    What a rebalance sees is the same: Faust's `getmany` stops yielding once the flow is
    suspended, so Faust too drops the rest of that fetch (and seeks back to the committed offsets
    when the flow resumes); a delivery blocked on a full stream buffer is cancelled as before.

    The fetch itself stays outside that race, as in Faust. It runs in the consumer's thread, which
    moves the partitions' positions past the records it returns whether or not anyone still waits
    for them: a fetch cancelled by a rebalance loses them. One such fetch, still long-polling after
    the recovery had seeked, took the changelog records the recovery waited for (the worker never
    became ready); another took the first event a partition received after the rebalance, and the
    commit of the later ones covered it (a lost order confirmation).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer_drained = asyncio.Event()  # a stream's full buffer has room again
        # Per assigned stream partition, the offset its next record must have (None: not known
        # until one arrives), and the last gap read again (`_drain_messages`).
        self.next_offsets: dict[TP, int | None] = {}
        self.gaps_read_again: dict[TP, tuple[int, int]] = {}
        # Set by the app: the highest offset a commit may name per partition (None: no bound).
        self.commit_limit: Callable[[str, int], int | None] = lambda topic, partition: None

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """Faust's commit, never past the records handed to the handler: a commit beyond them
        would make records no one handled count as done (a chaos run lost an order that way)."""
        bounded = dict(offsets)
        for tp, offset in offsets.items():
            limit = self.commit_limit(tp.topic, tp.partition)
            if limit is not None and offset > limit:
                log.error(
                    "commit held back: it went past records the handler never saw",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=offset,
                    handled_up_to=limit,
                )
                bounded[tp] = limit
        committed: bool = await super()._commit(bounded)
        return committed

    async def read_again(self, tp: TP, offset: int) -> None:
        """Read a stream partition again from `offset`: records past it never reached the handler
        (offsetwatch.py). Until the record at `offset` comes, the drain delivers nothing later of
        that partition (records already fetched are sought back again, `_drain_messages`)."""
        self.gaps_read_again.pop(tp, None)
        self.next_offsets[tp] = offset
        await self._seek_back(tp, offset)

    async def _seek_back(self, tp: TP, offset: int) -> None:
        """Seek a stream partition back to `offset` with no read offset: a jump from the read
        offset, made by a record still in flight from before the seek, would be recorded by
        Faust's drain as a gap of the log (acked, so commits would pass the records skipped)."""
        # A rebalance that took the partition away meanwhile: its next owner reads it.
        with contextlib.suppress(IllegalStateError):
            await self.seek(tp, offset)
        self._read_offset[tp] = None

    async def accept_gap(self, tp: TP, start: int, end: int) -> None:
        """Offsets `start`..`end` (excluded) are not in the log (the offset watch read them again
        and the same records came): acked as Faust acks the gaps it records, so commits pass."""
        await self._add_gap(tp, start, end - 1)

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self.buffer_drained.set()

    async def perform_seek(self) -> None:
        """Faust's seek back to the committed offsets, and to the beginning for a stream
        partition with none (or 0) committed yet.

        Faust seeks back whenever records it fetched may have been dropped: `getmany` with the
        flow stopped by a rebalance, and the end of every recovery. But aiokafka's
        `seek_to_committed` moves only partitions whose committed offset is above 0, so on a
        partition this group has never committed (a new deployment, a new partition) records
        a fetch took across a rebalance were dropped and never read again: the chaos slice lost
        the first event of a partition this way in about one run of three. With nothing
        committed the group reads from the beginning anyway (`auto_offset_reset=earliest`), so
        seeking there repeats at most what was read since the start, which at-least-once and the
        engine's event de-duplication absorb. Changelog and standby partitions are the
        recovery's own: never moved here.
        """
        await super().perform_seek()
        streams = [tp for tp in self.assignment() if not self._is_changelog_tp(tp)]
        uncommitted = [tp for tp in streams if not self._committed_offset.get(tp)]
        # Where each stream partition now stands: its committed offset, or (from the beginning)
        # not known until its first record.
        # In place: the drain loop holds this dict from its start (a new one went unseen by it,
        # so the guard watched the first assignment's offsets for good).
        self.next_offsets.clear()
        self.next_offsets.update({tp: self._committed_offset.get(tp) or None for tp in streams})
        if uncommitted:
            # On the consumer's thread, which wants aiokafka's own partition type. A rebalance
            # that took a partition away meanwhile makes this an IllegalStateError: the next
            # assignment seeks again.
            with contextlib.suppress(IllegalStateError):
                await self._thread.seek_to_beginning(
                    *(self._new_topicpartition(tp.topic, tp.partition) for tp in uncommitted)
                )

    async def seek(self, partition: TP, offset: int) -> None:
        """Faust's seek, which also moves where the partition's next record must be."""
        await super().seek(partition, offset)
        if partition in self.next_offsets:
            self.next_offsets[partition] = offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self.next_offsets.pop(tp, None)
            self.gaps_read_again.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 - Faust's signature
        """Faust's (faust-streaming 0.15.3, transport/consumer.py), with two changes for when the
        streams' buffers are full and Faust has set their partitions aside (`on_buffer_full`):

        - a fetch while some partitions are set aside waits at most `BUFFERED_FETCH_WAIT`: it
          asks only for the others (ticks, deliveries: usually nothing), and a partition
          resumed meanwhile would otherwise wait for the whole timeout, a second;
        - when every partition is set aside, it waits until a buffer drains (`on_buffer_drop`)
          instead of sleeping a second.

        Under a backlog the buffers fill at every fetch. Measured before (docs/processor.md): the
        agent emptied its buffer and then sat idle for ~1 s, three times in a 5-second drain of
        56,000 events.

        """
        drained = self.buffer_drained
        drained.clear()  # before the partitions are read: a drop after this wakes the wait
        if not self.flow_active:
            await self.wait(self.can_resume_flow)  # type: ignore[arg-type]  # as in Faust
        try:
            self.not_waiting_next_records.set()
            client_only = self.app.client_only
            active_partitions = None if client_only else self._get_active_partitions()
            records: Any = {}
            if active_partitions is None or active_partitions:
                if self._buffered_partitions:
                    timeout = min(timeout, BUFFERED_FETCH_WAIT)
                # Faust's live set, not a copy: a copy kept draining partitions a rebalance had
                # set aside, whose records `getmany` then dropped without seeking back (104
                # commands lost in a chaos run). The empty-set case it was for is healed by the
                # recovery watch's re-seek (recovery_watch.py) and `perform_seek` below.
                records = await self._getmany(active_partitions=active_partitions, timeout=timeout)
            else:
                await self.wait(drained.wait(), timeout=1.0)
            return records, active_partitions
        finally:
            self.not_waiting_next_records.set()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        sleep = asyncio.sleep

        next_offsets = self.next_offsets
        gaps_read_again = self.gaps_read_again

        async def deliver(fetched: list[tuple[Any, Any]]) -> None:
            since_yield = 0
            read_again: dict[Any, int] = {}
            # Per partition, the offset of its last record in this fetch: one fetch is one
            # contiguous slice of the log, so offsets missing between two of its records are
            # the log's own (transaction markers, compaction); missing before its first record
            # they may be records a stale fetch took (class docstring).
            previous: dict[Any, int] = {}
            for tp, message in fetched:
                since_yield += 1
                if since_yield > 100:
                    await sleep(0)
                    since_yield = 0
                offset = message.offset
                if tp in read_again:
                    continue
                expected = next_offsets.get(tp)
                before = previous.get(tp)
                if expected is not None and offset > expected and before != expected - 1:
                    # The fetch does not start where the partition stands: read it again from
                    # there. Once: a gap that comes back the same is delivered, but not recorded
                    # as the log's (no commit passes it on that ground): the offset watch
                    # (offsetwatch.py) reads it again before it takes it as such.
                    if gaps_read_again.get(tp) != (expected, offset):
                        gaps_read_again[tp] = (expected, offset)
                        read_again[tp] = expected
                        continue
                    set_read_offset(tp, None)
                r_offset = get_read_offset(tp)
                if r_offset is None or offset >= r_offset:
                    if (
                        before is not None
                        and offset - before > 1
                        and acks_enabled_for(message.topic)
                    ):
                        await self._add_gap(tp, before + 1, offset - 1)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    if next_offsets.get(tp) != expected:
                        # Sought back while this record waited for room in the stream's buffer
                        # (`read_again`): where the partition stands is the seek's now.
                        continue
                    set_read_offset(tp, offset)
                    previous[tp] = offset
                    if tp in next_offsets:
                        next_offsets[tp] = offset + 1
            for tp, offset in read_again.items():
                log.warning(
                    "records skipped by a fetch: reading the partition again",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=offset,
                )
                await self._seek_back(tp, offset)

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    # Never cancelled by a rebalance (class docstring). Faust's getmany checks the
                    # flow and the consumer generation as it yields, and seeks back to the
                    # committed offsets itself if the flow stopped during the fetch (not the
                    # changelog partitions, which have none: recovery_watch.py).
                    fetched = [pair async for pair in records]
                    if fetched:
                        await self.wait_first(deliver(fetched), self.suspend_flow.wait())
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class BatchDrainTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `BatchDrainConsumer`."""

    Consumer = BatchDrainConsumer


class FastApp(faust.App):
    """A Faust app whose consumer is `BatchDrainConsumer` (for `kafka://` brokers)."""

    def _new_transport(self) -> Any:
        return BatchDrainTransport(self.conf.broker_consumer, self)
