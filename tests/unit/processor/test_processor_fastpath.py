"""The fast paths' batch reader, raw decoding and sink, against small stand-ins for Faust's
objects."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import faust
import pytest
from aiokafka import TopicPartition
from faust.types import TP
from mode.utils.queues import FlowControlEvent, ThrowableQueue
from processor_fakes import TOPICS, Rig, SizeCheckingProducer, largest_record

from nudge.admin import DEAD_LETTER_MAX_MESSAGE_BYTES, topic_configs
from nudge.deadletter import read_headers
from nudge.processor.fastpath import (
    BUFFERED_FETCH_WAIT,
    BatchDrainConsumer,
    DirectSink,
    FastApp,
    RawSchema,
    known_absent,
    take_batches,
)
from nudge.topics import Topics


async def eventually(check: Callable[[], bool]) -> None:
    """Let the loop run until `check()` holds (fail after 5 s or more). A fixed sleep before an
    assertion that something happened fails on a loaded machine."""
    for _ in range(5_000):
        if check():
            return
        await asyncio.sleep(0.001)
    pytest.fail("the condition never held")


@dataclass(eq=False)
class FakeMessage:
    topic: str
    offset: int
    generation_id: int = 1
    partition: int = 0
    tracked: bool = False
    acked: bool = False

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass(eq=False)
class FakeEvent:
    message: FakeMessage

    def ack(self) -> None:
        self.message.acked = True


@dataclass
class FakeFlow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class FakeApp:
    acking_topics: set[str]
    consumer_generation_id: int = 1
    flow_control: FakeFlow = field(default_factory=FakeFlow)
    unacked: set[FakeMessage] = field(default_factory=set)
    inbound: dict[Any, float] = field(default_factory=dict)
    _waiting_for_ack: Any = None  # Faust's future a rebalance waits on for acks

    @property
    def topics(self) -> Any:
        return self

    @property
    def consumer(self) -> Any:
        return self

    @property
    def monitor(self) -> Any:
        return self

    @property
    def stream_inbound_time(self) -> dict[Any, float]:
        return self.inbound


class FakeStream:
    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.queue = ThrowableQueue(flow_control=FlowControlEvent())  # a Faust channel queue
        self.should_stop = False
        self.stopped_iterating = False

    @property
    def channel(self) -> Any:
        return self

    async def maybe_start(self) -> None:
        return None

    def on_stop_iteration(self) -> None:
        self.stopped_iterating = True

    def put(self, *messages: FakeMessage) -> list[FakeEvent]:
        events = [FakeEvent(m) for m in messages]
        for event in events:
            self.queue.put_nowait(event)
        return events


async def test_a_batch_holds_what_is_queued_up_to_the_maximum() -> None:
    """Queued records come out in order, at most `max_` per batch."""
    stream = FakeStream(FakeApp({"t"}))
    stream.put(*(FakeMessage("t", n) for n in range(5)))
    batches = take_batches(stream, 3, within=0.01)
    first = await anext(batches)
    second = await anext(batches)
    assert [e.message.offset for e in first] == [0, 1, 2]
    assert [e.message.offset for e in second] == [3, 4]


async def test_records_are_tracked_at_once_and_acked_only_when_the_next_batch_is_asked_for() -> (
    None
):
    """A batch is unacked while the agent handles it (a rebalance waits for it), acked after."""
    app = FakeApp({"t"})
    stream = FakeStream(app)
    messages = [FakeMessage("t", 0), FakeMessage("t", 1)]
    stream.put(*messages)
    batches = take_batches(stream, 10, within=0.01)
    await anext(batches)
    assert all(m.tracked and not m.acked for m in messages)
    assert app.unacked == set(messages)
    stream.put(FakeMessage("t", 2))
    await anext(batches)
    assert all(m.acked for m in messages)


async def test_records_taken_out_of_a_batch_are_neither_acked_nor_tracked() -> None:
    """The agent takes out records past a hole (offsetwatch.py): they will be read again, so no
    commit may pass them and no rebalance may wait for them."""
    app = FakeApp({"t"})
    stream = FakeStream(app)
    kept, taken_out = FakeMessage("t", 0), FakeMessage("t", 5)
    stream.put(kept, taken_out)
    batches = take_batches(stream, 10, within=0.01)
    batch = await anext(batches)
    del batch[1]
    app._waiting_for_ack = asyncio.get_running_loop().create_future()  # a rebalance waits
    stream.put(FakeMessage("t", 1))
    await anext(batches)
    assert kept.acked
    assert not taken_out.acked
    assert taken_out not in app.unacked
    assert app._waiting_for_ack.done()  # woken to look again


async def test_a_batch_interrupted_by_a_shutdown_stays_unacked() -> None:
    """Closing the reader mid-batch (a crash or a stop) acks nothing: the batch is replayed."""
    stream = FakeStream(FakeApp({"t"}))
    (event,) = stream.put(FakeMessage("t", 0))
    batches = take_batches(stream, 10, within=0.01)
    await anext(batches)
    await batches.aclose()
    assert not event.message.acked


async def test_a_stop_thrown_into_the_channel_ends_the_batches_without_a_crash() -> None:
    """Faust stops an actor by throwing StopAsyncIteration into its channel's queue (SIGTERM):
    the batches end as Faust's own iterator ends, where an async generator letting it through
    would raise RuntimeError and crash the agent mid-shutdown."""
    stream = FakeStream(FakeApp({"t"}))
    (handled,) = stream.put(FakeMessage("t", 0))
    seen: list[int] = []

    async def agent() -> None:
        async for batch in take_batches(stream, 10, within=0.01):
            seen.extend(e.message.offset for e in batch)

    running = asyncio.ensure_future(agent())
    await eventually(lambda: seen == [0])  # the agent handled its batch
    stream.queue._throw(StopAsyncIteration())
    await asyncio.wait_for(running, 1.0)
    assert seen == [0]
    assert handled.message.acked
    assert stream.stopped_iterating


async def test_records_of_an_older_consumer_generation_or_a_suspended_flow_are_dropped() -> None:
    """As Faust's stream iterator: dropped untracked, never handed to the agent."""
    app = FakeApp({"t"}, consumer_generation_id=2)
    stream = FakeStream(app)
    old, new = FakeMessage("t", 0, generation_id=1), FakeMessage("t", 1, generation_id=2)
    stream.put(old, new)
    batches = take_batches(stream, 10, within=0.01)
    batch = await anext(batches)
    assert [e.message for e in batch] == [new]
    assert not old.tracked
    app.flow_control.active = False
    suspended = FakeMessage("t", 2, generation_id=2)
    stream.put(suspended, FakeMessage("t", 3, generation_id=2))
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert not suspended.tracked
    waiting.cancel()


async def test_a_partial_batch_is_handed_over_after_the_wait() -> None:
    """Fewer records than the maximum are handed over once `within` has passed."""
    stream = FakeStream(FakeApp({"t"}))
    stream.put(FakeMessage("t", 0))
    batch = await asyncio.wait_for(anext(take_batches(stream, 500, within=0.02)), 1.0)
    assert len(batch) == 1


async def test_raw_schema_hands_over_the_messages_own_key_and_value() -> None:
    """Raw bytes in, the same bytes (and None) out, as Faust's `raw` codec gives them."""
    app = faust.App("raw-schema-test", autodiscover=False)
    decode = RawSchema().compile(app)
    for key, value in ((b"u1", b"{}"), (None, None)):
        message = FakeMessage("t", 0)
        message.key, message.value, message.headers = key, value, []  # type: ignore[attr-defined]
        event = await decode(message)
        assert (event.key, event.value, event.message) == (key, value, message)


class DrainingConsumer:
    """What `BatchDrainConsumer._drain_messages` reads of Faust's consumer. Its fetch stands for
    the consumer thread's: it waits until released, and records whether it was cancelled."""

    def __init__(self) -> None:
        self._stopped = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        self._read_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
        self.should_stop = False
        self.consumer_stopped_errors = ()
        self.fetch_started = asyncio.Event()
        self.release = asyncio.Event()
        self.waiting: list[FakeMessage] = []
        self.fetches: list[str] = []
        self.delivered: list[int] = []
        self.next_offsets: dict[Any, int | None] = {}
        self.gaps_read_again: dict[Any, tuple[int, int]] = {}
        self.seeks: list[tuple[Any, int]] = []
        self.gaps: list[tuple[Any, int, int]] = []

    async def callback(self, message: FakeMessage) -> None:
        self.delivered.append(message.offset)

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:  # Faust: acked as read
        self.gaps.append((tp, start, end))

    _seek_back = BatchDrainConsumer._seek_back  # the real one, over the seek below

    async def seek(self, tp: Any, offset: int) -> None:  # what BatchDrainConsumer.seek keeps
        self.seeks.append((tp, offset))
        self._read_offset[tp] = offset
        if tp in self.next_offsets:
            self.next_offsets[tp] = offset

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> AsyncIterator[tuple[Any, FakeMessage]]:
        self.fetch_started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.fetches.append("cancelled")
            raise
        self.release.clear()
        self.fetches.append("done")
        fetched, self.waiting = self.waiting, []
        for message in fetched:
            yield message.tp, message

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait_first(self, *coros: Awaitable[Any]) -> None:  # mode's, without its results
        futures = [asyncio.ensure_future(c) for c in coros]
        try:
            await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in futures:
                future.cancel()


async def test_a_rebalance_never_cancels_a_fetch_in_flight() -> None:
    """The consumer thread moves a partition's position past the records it fetched, so a fetch
    cancelled when a rebalance stops the flow would lose them: it runs to the end, and its records
    are delivered once the flow resumes."""
    consumer = DrainingConsumer()
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    drain = asyncio.ensure_future(BatchDrainConsumer._drain_messages(consumer, fetcher))  # type: ignore[arg-type]
    await asyncio.wait_for(consumer.fetch_started.wait(), 1.0)
    consumer.suspend_flow.set()  # a rebalance starts while the fetch waits for records
    await asyncio.sleep(0.05)
    assert consumer.fetches == []
    consumer.suspend_flow.clear()
    consumer.waiting = [FakeMessage("t", 4)]
    consumer.release.set()
    await eventually(lambda: consumer.delivered == [4])
    assert consumer.fetches == ["done"]
    consumer._stopped.set()
    consumer.release.set()
    await asyncio.wait_for(drain, 1.0)


async def _drain(consumer: DrainingConsumer, fetches: list[list[FakeMessage]]) -> None:
    """Run `_drain_messages` over these fetches, one after the other, then stop it."""
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    drain = asyncio.ensure_future(BatchDrainConsumer._drain_messages(consumer, fetcher))  # type: ignore[arg-type]
    for number, messages in enumerate(fetches, start=1):
        await eventually(lambda: consumer.fetch_started.is_set())
        consumer.fetch_started.clear()
        consumer.waiting = messages
        consumer.release.set()
        await eventually(lambda n=number: len(consumer.fetches) == n)  # type: ignore[misc]
    await eventually(lambda: consumer.fetch_started.is_set())
    consumer._stopped.set()
    consumer.release.set()
    await asyncio.wait_for(drain, 1.0)


def standing_at(tp: TP, offset: int) -> DrainingConsumer:
    """A drain whose partition `tp` stands at `offset` (committed, Faust's seek done)."""
    consumer = DrainingConsumer()
    consumer.next_offsets[tp] = offset
    consumer._read_offset[tp] = offset
    return consumer


async def test_records_a_stale_fetch_took_are_read_again_not_skipped() -> None:
    """A partition stands at offset 10 (committed) but the fetch starts at 12: 10 and 11 went
    to a fetch a rebalance made stale. Faust would ack the gap and commit past two events; the
    partition is read again from 10 instead, and every record is delivered once, in order."""
    tp = TP("events", 0)
    consumer = standing_at(tp, 10)
    await _drain(
        consumer,
        [
            [FakeMessage("events", 12), FakeMessage("events", 13)],
            [FakeMessage("events", o) for o in (10, 11, 12, 13)],
        ],
    )
    assert consumer.seeks == [(tp, 10)]
    assert consumer.delivered == [10, 11, 12, 13]
    assert consumer.gaps == []
    assert consumer.next_offsets[tp] == 14


async def test_offsets_missing_inside_one_fetch_are_the_logs_own() -> None:
    """One fetch is a contiguous slice of the log: offsets missing between two of its records
    are transaction markers or compacted records. Faust records them as a gap (acked, so
    commits pass them), and the records flow on without reading again."""
    tp = TP("events", 0)
    consumer = standing_at(tp, 10)
    await _drain(consumer, [[FakeMessage("events", o) for o in (10, 12, 13)]])
    assert consumer.seeks == []
    assert consumer.delivered == [10, 12, 13]
    assert consumer.gaps == [(tp, 11, 11)]  # Faust's interval: 11 up to 11 included


async def test_a_gap_before_a_fetch_is_read_again_and_never_recorded_as_the_logs() -> None:
    """Missing before a fetch's first record, the offsets may be records a stale fetch took.
    Read again once; if the same gap comes back the records are delivered, but no gap is
    recorded (so no commit passes it on that ground): the offset watch reads it again before it
    takes it for the log's own. (A run lost 170 commands when this path recorded a stale
    fetch's jump as a gap.)"""
    tp = TP("events", 0)
    consumer = standing_at(tp, 10)
    await _drain(
        consumer,
        [
            [FakeMessage("events", 12), FakeMessage("events", 13)],
            [FakeMessage("events", 12), FakeMessage("events", 13)],
        ],
    )
    assert consumer.seeks == [(tp, 10)]
    assert consumer.delivered == [12, 13]
    assert consumer.gaps == []


async def test_a_partition_read_again_delivers_nothing_past_the_hole_until_it_comes() -> None:
    """The agent found records 10 to 19 missing (dropped after the fetch) and asks to read the
    partition again: records still fetched from before are not delivered (sought back once
    more), and delivery goes on from 10."""
    tp = TP("events", 0)
    consumer = standing_at(tp, 20)
    await BatchDrainConsumer.read_again(consumer, tp, 10)  # type: ignore[arg-type]
    assert consumer.next_offsets[tp] == 10
    await _drain(
        consumer,
        [
            [FakeMessage("events", 20), FakeMessage("events", 21)],  # fetched before the seek
            [FakeMessage("events", o) for o in (10, 11, 12)],
        ],
    )
    assert consumer.seeks == [(tp, 10), (tp, 10)]
    assert consumer.delivered == [10, 11, 12]
    assert consumer.gaps == []


async def test_a_seek_back_asked_while_a_record_waits_for_room_is_not_overwritten() -> None:
    """The agent asks to read a partition again from 10 while the drain is handing it record 21
    (waiting for room in the stream's buffer): that record does not move the partition's
    expected offset past the seek, so the rest of the fetch is held back and delivery goes on
    from 10. (It did move it: the re-read records then counted as already read and were
    dropped, and a chaos run sought one partition back three times.)"""
    tp = TP("events", 0)
    consumer = standing_at(tp, 20)
    delivered = consumer.delivered

    async def callback(message: FakeMessage) -> None:
        delivered.append(message.offset)
        if message.offset == 21:
            await BatchDrainConsumer.read_again(consumer, tp, 10)  # type: ignore[arg-type]

    consumer.callback = callback  # type: ignore[method-assign]
    await _drain(
        consumer,
        [
            [FakeMessage("events", o) for o in (20, 21, 22, 23)],
            [FakeMessage("events", o) for o in (10, 11)],
        ],
    )
    assert delivered == [20, 21, 10, 11]
    assert consumer.seeks == [(tp, 10), (tp, 10)]
    assert consumer.next_offsets[tp] == 12


async def test_a_partition_whose_position_is_not_known_is_taken_as_it_comes() -> None:
    """Read from its beginning (never committed) or not a stream's: no expectation to check."""
    consumer = DrainingConsumer()
    consumer.next_offsets[TP("events", 0)] = None
    await _drain(consumer, [[FakeMessage("events", 7), FakeMessage("ticks", 3)]])
    assert consumer.seeks == []
    assert consumer.delivered == [7, 3]
    assert consumer.next_offsets == {TP("events", 0): 8}


class FetchingConsumer:
    """A real `BatchDrainConsumer` (no broker is contacted) whose consumer-thread fetch records
    the timeout it was given and returns nothing, as a fetch of partitions without records."""

    def __init__(self) -> None:
        app = FastApp("fetch-test", broker="kafka://127.0.0.1:1", autodiscover=False)
        self.consumer = cast(BatchDrainConsumer, app.consumer)
        self.timeouts: list[float] = []
        self.consumer._getmany = self._getmany  # type: ignore[method-assign]

    async def _getmany(self, active_partitions: Any, timeout: float) -> dict[Any, Any]:  # noqa: ASYNC109
        self.timeouts.append(timeout)
        return {}

    def close(self) -> None:
        self.consumer._thread.thread_loop.close()  # made by the (never started) consumer thread


@pytest.fixture
async def fetching() -> AsyncIterator[FetchingConsumer]:
    consumer = FetchingConsumer()  # inside the test's loop: the consumer's waits use its loop
    yield consumer
    consumer.close()


EVENTS_0, TICKS_0 = TP("events", 0), TP("ticks", 0)


async def test_a_fetch_while_a_full_buffer_sets_partitions_aside_waits_only_briefly(
    fetching: FetchingConsumer,
) -> None:
    """With the events' partitions set aside (their stream's buffer is full), a fetch asks only
    for the rest (ticks: nothing to read). Faust lets it wait its whole second; the events'
    partitions, resumed a moment later, would wait with it."""
    consumer = fetching.consumer
    consumer._set_active_tps({EVENTS_0, TICKS_0})
    await consumer._wait_next_records(1.0)
    consumer.on_buffer_full(EVENTS_0)
    await consumer._wait_next_records(1.0)
    assert fetching.timeouts == [1.0, BUFFERED_FETCH_WAIT]
    consumer.on_buffer_drop(EVENTS_0)
    await consumer._wait_next_records(1.0)
    assert fetching.timeouts[-1] == 1.0


async def test_with_every_partition_set_aside_fetching_resumes_when_a_buffer_drains(
    fetching: FetchingConsumer,
) -> None:
    """Faust sleeps a second when no partition is left to fetch; here the fetch loop goes on as
    soon as the agent has made room in a buffer."""
    consumer = fetching.consumer
    consumer._set_active_tps({EVENTS_0})
    consumer.on_buffer_full(EVENTS_0)
    waiting = asyncio.ensure_future(consumer._wait_next_records(1.0))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    consumer.on_buffer_drop(EVENTS_0)
    records, _active = await asyncio.wait_for(waiting, 0.9)  # before Faust's 1 s sleep ends
    assert (records, fetching.timeouts) == ({}, [])
    await consumer._wait_next_records(1.0)
    assert fetching.timeouts == [1.0]


CHANGELOG_0 = TP("app-users-changelog", 0)


async def test_aiokafka_gives_a_fetch_whose_set_is_empty_every_partition() -> None:
    """Why the copy above: aiokafka's `fetched_records` (on the consumer thread) filters by the set
    only when it is not empty, and moves the partition's position past what it returns."""
    from aiokafka.consumer.fetcher import Fetcher, FetchResult, PartitionRecords
    from aiokafka.consumer.subscription_state import SubscriptionState
    from aiokafka.record.default_records import DefaultRecordBatchBuilder
    from aiokafka.record.memory_records import MemoryRecords

    subscriptions = SubscriptionState()
    subscriptions.assign_from_user({CHANGELOG_0, EVENTS_0})
    assignment = subscriptions.subscription.assignment
    for tp in (CHANGELOG_0, EVENTS_0):
        assignment.state_value(tp).seek(0)  # as the recovery seeks
    fetcher = Fetcher.__new__(Fetcher)  # no client, no background fetch task
    fetcher._subscriptions, fetcher._records, fetcher._fetch_waiters = subscriptions, {}, set()
    fetcher._loop, fetcher._closed = asyncio.get_running_loop(), False
    fetcher._wait_consume_future = None
    builder = DefaultRecordBatchBuilder(2, 0, 0, -1, -1, -1, 1 << 20)
    for offset in range(3):
        builder.append(offset, timestamp=None, key=b"k", value=b"v", headers=[])
    records = MemoryRecords(bytes(builder.build()))

    def land() -> None:  # the changelog records the recovery sought come back
        partition = PartitionRecords(CHANGELOG_0, records, [], 0, None, None, True, 0)
        fetcher._records[CHANGELOG_0] = FetchResult(
            CHANGELOG_0, assignment=assignment, partition_records=partition, backoff=0.1
        )

    land()
    assert await fetcher.fetched_records(frozenset({EVENTS_0}), timeout=0) == {}
    assert assignment.state_value(CHANGELOG_0).position == 0
    live = {EVENTS_0}
    in_flight = asyncio.ensure_future(fetcher.fetched_records(live, timeout=1.0))
    await asyncio.sleep(0.01)
    live.clear()  # Faust's pause_partitions, on the live set the fetch was given
    land()
    for waiter in list(fetcher._fetch_waiters):
        fetcher._notify(waiter)
    taken = await asyncio.wait_for(in_flight, 1.0)
    assert [r.offset for r in taken[CHANGELOG_0]] == [0, 1, 2]
    assert assignment.state_value(CHANGELOG_0).position == 3


async def test_the_largest_event_the_broker_accepts_is_dead_lettered_whole(rig: Rig) -> None:
    """An event as large as the broker lets an app publish (1,048,588 bytes by default; Nudge
    reads at most 64 KiB) goes to the events DLT as `too_large`, its bytes untouched and the
    headers added, through a producer limited as the processor's is, to a `-dlt` topic
    configured as Nudge creates it. The next record of the batch is handled as usual."""
    dlt = Topics.dead_letter(TOPICS.events)
    producer = SizeCheckingProducer(
        max_request_size=DEAD_LETTER_MAX_MESSAGE_BYTES,  # the processor's (test_processor_app)
        topic_limits={dlt: int(topic_configs(dlt)["max.message.bytes"])},
    )
    rig.handler.sink = DirectSink(cast("faust.App", SimpleNamespace(producer=producer)))
    value = largest_record(b"u-1")
    big = rig.record(TOPICS.events, value, key=b"u-1")
    order = {"order_id": "o-1", "total": 4800, "currency": "JPY", "items": []}
    after = rig.event_record(type="order.completed", user_id="u-2", properties=order)
    await rig.handler.handle_batch([big, after])
    [(topic, key, sent, headers), (command_topic, *_)] = producer.sent
    assert (topic, key, sent) == (dlt, b"u-1", value)
    assert read_headers(headers)["nudge-error-reason"] == "too_large"
    assert command_topic == TOPICS.send_commands
    assert b"u-2" in rig.store.data


async def test_a_seek_back_reads_a_never_committed_stream_partition_from_its_beginning(
    fetching: FetchingConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust seeks back to the committed offsets when fetched records may have been dropped (a
    rebalance), but aiokafka moves only partitions committed above 0: a partition never committed
    kept its position past the dropped records (the chaos slice lost a partition's first event).
    Such stream partitions go back to their beginning; committed ones and changelogs do not."""
    consumer = fetching.consumer
    events_1, committed = TP("events", 1), TP("events", 2)
    assigned = {EVENTS_0, events_1, committed, TICKS_0, CHANGELOG_0}
    rewound: list[set[TP]] = []

    async def seek_to_committed() -> dict[TP, int | None]:
        return {EVENTS_0: None, events_1: 0, committed: 41, TICKS_0: None, CHANGELOG_0: None}

    async def seek_to_beginning(*partitions: Any) -> None:
        assert all(isinstance(tp, TopicPartition) for tp in partitions)  # aiokafka's, not Faust's
        rewound.append({TP(tp.topic, tp.partition) for tp in partitions})

    monkeypatch.setattr(consumer, "assignment", lambda: assigned)
    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer._thread, "seek_to_beginning", seek_to_beginning)
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: tp == CHANGELOG_0)
    expectations = consumer.next_offsets  # what the drain loop holds from its start
    await consumer.perform_seek()
    assert consumer.next_offsets is expectations  # updated in place, not replaced
    assert rewound == [{EVENTS_0, events_1, TICKS_0}]
    # Where the next record of each must be (`_drain_messages` reads again what a fetch skips).
    assert consumer.next_offsets == {EVENTS_0: None, events_1: None, committed: 41, TICKS_0: None}


async def test_a_commit_never_names_an_offset_past_the_records_handed_to_the_handler(
    fetching: FetchingConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chaos run lost an order: the group's offset was committed past an event no one handled.
    A commit is held back to one past the last record handed over; partitions without a bound
    (not seen since their assignment) commit as Faust asks."""
    consumer = fetching.consumer
    sent: list[dict[TP, int]] = []

    async def commit(offsets: dict[TP, int]) -> bool:
        sent.append(dict(offsets))
        return True

    monkeypatch.setattr(consumer._thread, "commit", commit)
    limits = {("events", 0): 120, ("events", 1): 300}
    consumer.commit_limit = lambda topic, partition: limits.get((topic, partition))
    assert await consumer._commit({EVENTS_0: 150, TP("events", 1): 250, TICKS_0: 7})
    assert sent == [{EVENTS_0: 120, TP("events", 1): 250, TICKS_0: 7}]


async def test_offsets_are_known_absent_only_where_faust_recorded_gaps_covering_them(
    fetching: FetchingConsumer,
) -> None:
    """Faust's drain records the offsets a fetch stepped over (transaction markers, compaction);
    the offset watch passes a hole only if those cover all of it."""
    consumer = fetching.consumer
    consumer._gap[EVENTS_0].addi(11, 13)
    consumer._gap[EVENTS_0].addi(13, 20)
    assert known_absent(consumer, "events", 0, 11, 20)
    assert known_absent(consumer, "events", 0, 12, 15)
    assert not known_absent(consumer, "events", 0, 10, 20)  # 10 is not known absent
    assert not known_absent(consumer, "events", 0, 11, 21)
    assert not known_absent(consumer, "events", 1, 11, 12)


async def test_a_gap_accepted_as_the_logs_own_is_known_absent_and_lets_commits_pass(
    fetching: FetchingConsumer,
) -> None:
    """The offset watch read a hole again twice and the same records came: it is the log's own
    (retention, a marker at the committed offset). Without telling Faust, its commits would stop
    at the hole for good."""
    consumer = fetching.consumer
    await consumer.accept_gap(EVENTS_0, 100, 140)
    assert known_absent(consumer, "events", 0, 100, 140)
    assert not known_absent(consumer, "events", 0, 100, 141)
