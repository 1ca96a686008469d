"""The Faust application of the processor, built from `Settings` (no module-level state).

One agent reads three co-partitioned topics keyed by user: `<prefix>events`, `<prefix>deliveries`
and `<prefix>internal.ticks`. Faust's assignor gives one worker the same partition of all three and
of the state table's changelog, so everything about one user runs serially in one place, and every
table write happens inside stream iteration (as Faust's RocksDB store requires). A timer on every
worker sends partition-addressed ticks when its due index says something is due.

Topics are created by `kafka.prepare_topics` before the worker starts (the sender, the apps and
Faust's co-partitioning all rely on the partition count); a mismatch stops the start.

The producer accepts records up to `admin.DEAD_LETTER_MAX_MESSAGE_BYTES` (Faust's default is
1,000,000, below what the broker lets an app publish): a rejected record of any size the broker
accepted can then be dead-lettered, to a `-dlt` topic created to take it. The handler caps the
states and records it makes itself far below that (`handler.MAX_STATE_BYTES`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import faust
import structlog
from faust.types import TP
from mode import Service

from nudge import metrics
from nudge.admin import DEAD_LETTER_MAX_MESSAGE_BYTES
from nudge.processor.fastpath import (
    FAST_PATHS_FAUST_VERSION,
    BatchDrainConsumer,
    DirectSink,
    DirectTableStore,
    FastApp,
    LeanMonitor,
    RawSchema,
    committed_offset,
    fast_paths_fit,
    known_absent,
    take_batches,
)
from nudge.processor.handler import HandlerConfig, RecordHandler
from nudge.processor.kafka import TABLE_NAME, TICKS, KafkaSink, TableStore, TickSender
from nudge.processor.offsetwatch import Admission, OffsetWatch
from nudge.processor.ports import (
    Clock,
    JourneyEngine,
    Record,
    Sink,
    StateCodec,
    StateStore,
    SystemClock,
)
from nudge.processor.recovery_watch import RecoveryWatch, reseek
from nudge.processor.timers import DueIndex, TickPlanner
from nudge.settings import Settings
from nudge.topics import Topics

log = structlog.get_logger("nudge.processor")

EXIT_INFRASTRUCTURE: Final = 70  # EX_SOFTWARE
LAG_INTERVAL: Final = 5.0  # seconds between consumer-lag and pending-timer samples


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorOptions:
    """Knobs of one worker that are not deployment-wide settings (CLI flags)."""

    tick_interval: float = 1.0  # seconds between due-index checks
    session_timeout: float = 10.0  # seconds before the group gives a dead worker's partitions away
    web_host: str = "127.0.0.1"
    store: str = "rocksdb://"
    fire_limit: int = 5_000  # users fired per tick and partition
    # seconds a table recovery may read nothing while records remain before /livez says 503
    # (recovery_watch.py); 0 turns the watch off
    recovery_stall_limit: float = 120.0
    # seconds a table recovery may read nothing while records remain before its changelog
    # partitions are sought back to what it read (recovery_watch.py); 0: never
    recovery_reseek_after: float = 10.0
    batch_size: int = 500  # records decided per acknowledgement round trip
    batch_wait: float = 0.05  # seconds the stream waits to fill a batch
    # Faust's own per-record paths (table writes, producing, consumer, decoding, batching,
    # monitor) instead of fastpath.py's; slower, kept so that benchmarks can compare the two.
    faust_paths: bool = False


@dataclass(slots=True)
class Processor:
    """A built (not yet started) processor: the Faust app and the parts tests look at."""

    app: faust.App
    handler: RecordHandler
    index: DueIndex
    planner: TickPlanner
    topics: Topics
    settings: Settings
    options: ProcessorOptions
    watch: RecoveryWatch
    # runs the watch; the worker starts it before the app (RecoveryWatcher)
    watcher: Service | None = None

    def assigned(self) -> set[int]:
        """Partitions of the events topic this worker is active for."""
        return active_partitions(self.app, self.topics.events)

    def detail(self) -> str:
        """What /readyz adds: the partitions this worker is active for."""
        return "partitions: " + ",".join(str(p) for p in sorted(self.assigned()))

    def alive(self) -> bool:
        """False once a table recovery has read nothing for `recovery_stall_limit` seconds
        while records remain (recovery_watch.py): a restart is what gets such a worker going."""
        return not self.watch.stalled

    async def report_lag(self) -> None:
        """Sample the pending timers of every loaded partition and the consumer lag of every
        assigned source partition (every `LAG_INTERVAL`). A revoked partition's series are
        removed at the rebalance (`on_assigned`); a lag series this sample does not renew goes
        too (`metrics.set_consumer_lag`), so two workers never both report one."""
        index = self.index
        for partition in self.assigned():
            if index.loaded(partition):
                metrics.PENDING_TIMERS.labels(str(partition)).set(index.pending(partition))
        app = self.app
        topics = self.topics
        sources = {topics.events, topics.deliveries, topics.internal(TICKS)}
        consumer: Any = app.consumer
        committed = getattr(consumer, "_committed_offset", {})
        lags: dict[tuple[str, int], int] = {}
        for tp in app.assignor.assigned_actives():
            if tp.topic not in sources:
                continue
            try:
                done = committed.get(tp)
                if done is None:
                    done = await consumer.position(tp)
                end = consumer.highwater(tp)
            except Exception:  # noqa: S112 - a partition moving away mid-sample; next time
                continue
            if done is not None and end is not None:
                lags[(tp.topic, tp.partition)] = end - done
        metrics.set_consumer_lag("processor", lags)

    def ready(self) -> bool:
        """Tables recovered, no rebalance running, and every assigned due index loaded."""
        app = self.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager only
        if not recovery.completed.is_set() or app.rebalancing or app.in_recovery:
            return False
        return all(self.index.loaded(p) for p in self.assigned())


class RecoveryWatcher(Service):
    """Samples the table recovery every `LAG_INTERVAL` (recovery_watch.py) from the worker's
    start. Not an `app.timer`: Faust starts those only once the first table recovery has
    completed, and that one can hang too (a rebalance during it restarts it with the fetcher
    already running)."""

    def __init__(self, check: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        self.check = check
        super().__init__(**kwargs)

    @Service.timer(LAG_INTERVAL)
    async def _check(self) -> None:
        await self.check()


def _stop_on_changelog_failure(err: BaseException) -> None:
    # A state write whose changelog record the broker refused would be lost on the next restore:
    # stop before Faust commits the offsets of the records that led to it (at-least-once).
    log.critical("processor stopping: cannot write the state changelog", exc_info=err)
    os._exit(EXIT_INFRASTRUCTURE)


def active_partitions(app: faust.App, topic: str) -> set[int]:
    """Partitions of `topic` this worker is active (not standby) for."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


async def _read_holes_again(
    consumer: Any,
    admission: Admission,
    events: list[Any],
    *,
    read_again: bool,
    source: Callable[[str], str],
) -> list[Record]:
    """Act on what the offset watch found in a batch; the records to handle.

    With the batch paths, records past a hole are taken out of `events` (so `take_batches`
    neither acks them nor keeps them tracked) and their partition is read again from the hole.
    Faust's own paths ack whatever they handed over, so there the batch is handled whole and the
    hole only reported.
    """
    for hole in admission.accepted:
        metrics.OFFSET_HOLES.labels(source(hole.topic), "accepted").inc()
        log.warning(
            "records missing from a partition came back the same after reading it again: "
            "taken as the log's own (retention, a transaction marker)",
            topic=hole.topic,
            partition=hole.partition,
            expected=hole.expected,
            got=hole.got,
        )
        if read_again:  # Faust's commits would otherwise stop at the hole for good
            await consumer.accept_gap(TP(hole.topic, hole.partition), hole.expected, hole.got)
    for hole in admission.read_again:
        action = "read_again" if read_again else "reported"
        metrics.OFFSET_HOLES.labels(source(hole.topic), action).inc()
        log.warning(
            "records never reached the handler: reading the partition again from the first missing"
            if read_again
            else "records never reached the handler",
            topic=hole.topic,
            partition=hole.partition,
            expected=hole.expected,
            got=hole.got,
        )
        if read_again:
            await consumer.read_again(TP(hole.topic, hole.partition), hole.expected)
    if not read_again:
        return admission.handle + admission.held  # as handed over (Faust acks them all)
    events[:] = [record.context for record in admission.handle]
    return admission.handle


def create_processor(
    settings: Settings,
    *,
    engine: JourneyEngine,
    codec: StateCodec,
    clock: Clock | None = None,
    options: ProcessorOptions | None = None,
) -> Processor:
    """Build the Faust app, its table, agent and tick timer for one worker."""
    options = options or ProcessorOptions()
    clock = clock or SystemClock()
    topics = Topics(settings.topic_prefix)
    partitions = settings.topic_partitions
    faust_paths = options.faust_paths or not fast_paths_fit(faust.__version__)
    if faust_paths and not options.faust_paths:
        log.warning(
            "faust-streaming is not the version the fast paths were written for: using Faust's own",
            installed=faust.__version__,
            written_for=FAST_PATHS_FAUST_VERSION,
        )
    app_class = faust.App if faust_paths else FastApp
    app = app_class(
        topics.processor_app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap_servers.split(",")],
        store=options.store,
        datadir=str(settings.state_dir),
        processing_guarantee=settings.processing_guarantee,
        table_standby_replicas=settings.table_standby_replicas,
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=options.session_timeout,
        broker_heartbeat_interval=min(3.0, options.session_timeout / 5),
        producer_max_request_size=DEAD_LETTER_MAX_MESSAGE_BYTES,
        web_enabled=False,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        Monitor=faust.Monitor if faust_paths else LeanMonitor,
    )
    table = app.Table(
        TABLE_NAME, default=None, partitions=partitions, key_type=bytes, value_type=bytes
    )
    source = app.topic(
        topics.events,
        topics.deliveries,
        topics.internal(TICKS),
        partitions=partitions,
        key_serializer="raw",
        value_serializer="raw",
        schema=None if faust_paths else RawSchema(),
    )
    index = DueIndex()
    planner = TickPlanner(resend_after=max(5.0, 10 * options.tick_interval))
    store: StateStore
    sink: Sink
    # The batch paths write RocksDB and the changelog themselves: at-least-once with RocksDB only
    # (exactly-once needs every record on Faust's transactional path).
    batch_paths = (
        not faust_paths
        and settings.processing_guarantee == "at_least_once"
        and options.store.startswith("rocksdb")
    )
    if batch_paths:
        store, sink = (
            DirectTableStore(table, app, on_failure=_stop_on_changelog_failure),
            DirectSink(app),
        )
    else:
        store, sink = TableStore(table), KafkaSink(app)
    handler = RecordHandler(
        config=HandlerConfig(topics=topics, fire_limit=options.fire_limit),
        engine=engine,
        codec=codec,
        store=store,
        sink=sink,
        clock=clock,
        index=index,
        planner=planner,
        assigned=lambda: active_partitions(app, topics.events),
    )
    processor = Processor(
        app=app,
        handler=handler,
        index=index,
        planner=planner,
        topics=topics,
        settings=settings,
        options=options,
        watch=RecoveryWatch(
            stall_after=options.recovery_stall_limit, reseek_after=options.recovery_reseek_after
        ),
    )

    watch = OffsetWatch()
    source_names = {
        topics.events: "events",
        topics.deliveries: "deliveries",
        topics.internal(TICKS): TICKS,
    }

    def source_name(topic: str) -> str:  # as the handler labels its metrics
        return source_names.get(topic, topic)

    async def handle(stream: Any) -> None:
        consumer: Any = app.consumer  # the consumer exists once streams run
        if isinstance(consumer, BatchDrainConsumer):
            consumer.commit_limit = watch.commit_limit
        # Records past a hole are read again where `take_batches` lets them go unacked and the
        # consumer can seek; Faust's `take_events` acks whatever it handed over, so there a hole
        # is reported only (docs/processor.md, Known limits).
        read_again = batch_paths and isinstance(consumer, BatchDrainConsumer)
        if batch_paths:
            batches = take_batches(stream, options.batch_size, options.batch_wait)
        else:
            batches = stream.take_events(options.batch_size, within=options.batch_wait)
        committed = partial(committed_offset, consumer)
        absent = partial(known_absent, consumer)
        async for events in batches:
            records = [
                Record(
                    topic=event.message.topic,
                    partition=event.message.partition,
                    offset=event.message.offset,
                    key=event.message.key,
                    value=event.message.value,
                    context=event,
                )
                for event in events
            ]
            admission = watch.admit(records, committed, absent, time.monotonic())
            if admission.held or admission.accepted or admission.read_again:
                records = await _read_holes_again(
                    consumer, admission, events, read_again=read_again, source=source_name
                )
                if not read_again:
                    watch.move_past(admission.held)
                if not records:
                    continue
            try:
                await handler.handle_batch(records)
            except Exception as err:
                # The handler already dead-letters bad input and engine failures; what reaches here
                # is the infrastructure (broker, table store). Faust would ack these records when
                # the agent crashes and carry on; exiting at once leaves their offsets uncommitted,
                # so a restarted worker processes them again (at-least-once).
                first = records[0]
                log.critical(
                    "processor stopping: cannot process a batch, it will be retried on restart",
                    topic=first.topic,
                    partition=first.partition,
                    offset=first.offset,
                    records=len(records),
                    exc_info=err,
                )
                os._exit(EXIT_INFRASTRUCTURE)

    app.agent(source, name=f"{topics.prefix}handle", concurrency=1)(handle)

    ticker = TickSender(settings.kafka_bootstrap_servers, topics.internal(TICKS))

    async def send_ticks() -> None:
        loop = asyncio.get_running_loop()
        wanted = planner.plan(processor.assigned(), index, clock.now().timestamp(), loop.time())
        for partition in wanted:
            try:
                await ticker.send(partition)
            except Exception as err:  # the broker is away: try again at the next interval
                planner.done(partition)
                log.warning("cannot send a tick", partition=partition, error=repr(err))

    async def report_lag() -> None:
        await processor.report_lag()

    app.timer(interval=LAG_INTERVAL, name=f"{topics.prefix}lag")(report_lag)

    async def watch_recovery() -> None:
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager only
        watch, now = processor.watch, time.monotonic()
        was_stalled = watch.stalled
        stalled = watch.sample(
            recovering=bool(recovery.in_recovery),
            remaining=int(recovery.active_remaining_total()),
            read=sum(o for o in recovery.active_offsets.values() if o is not None),
            now=now,
        )
        if stalled and not was_stalled:
            log.error(
                "table recovery stalled: no changelog record read while some remain; "
                "/livez now answers 503 so that this worker is restarted",
                seconds=round(watch.seconds_stalled(now), 1),
                remaining=dict(recovery.active_remaining()),
            )
        elif not stalled and watch.reseek_due(now):
            try:
                sought = await reseek(app)
            except Exception as err:  # a rebalance moved the partitions meanwhile: it seeks too
                log.warning("table recovery stalled: seek back failed", error=repr(err))
                return
            if sought:
                log.warning(
                    "table recovery read no changelog record for a while although some remain: "
                    "its partitions are sought back to the last offset read",
                    sought={f"{tp.topic}:{tp.partition}": offset for tp, offset in sought.items()},
                )

    if options.recovery_stall_limit > 0 or options.recovery_reseek_after > 0:
        processor.watcher = RecoveryWatcher(watch_recovery)

    def on_shutdown(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> Any:
        return ticker.stop()

    app.timer(interval=options.tick_interval, name=f"{topics.prefix}ticks")(send_ticks)

    def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Partitions may have moved: reload every due index from the table at the next tick, and
        # stop reporting the partitions another worker has now.
        index.forget()
        planner.reset()
        kept = processor.assigned()
        handler.forget_partitions(keep=kept)
        watch.forget(keep=kept)

    app.on_partitions_assigned.connect(on_assigned)
    app.on_before_shutdown.connect(on_shutdown)
    return processor
