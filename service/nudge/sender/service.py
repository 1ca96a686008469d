"""The sender's shell: send commands in from Kafka, mail out over SMTP, outcomes back to Kafka.

Many commands are in flight at once (bounded by `sender_concurrency`); each one runs
`Delivery.handle` (deliver.py) and its offset is committed only when its outcome is recorded,
up to the lowest unfinished offset per partition (`OffsetTracker`). Retry-tier records wait for
their due time inside their task, so a waiting retry holds only its own tier's partition.

Start: create topics (`prepare_topics`), rebuild the ledger/suppression/policy views
(`TableFollower`), count ambiguous keys, then join the consumer group. SIGTERM (`stop` set): stop
fetching, cancel tasks still waiting for a retry's due time (their records are redelivered), let
in-flight sends finish, commit, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from nudge import metrics
from nudge.admin import (
    ensure_topics,
    public_topics,
    wait_for_group_coordinator,
    wait_until_serving,
)
from nudge.partitioner import partition_for
from nudge.policy import CONTACT_POLICY_TOPIC, WITHDRAWAL_MARGIN_MS
from nudge.sender.deliver import Delivery, Outputs, Write
from nudge.sender.ledger import LEDGER_TOPIC, LEDGER_TOPIC_CONFIG, KeyLedger
from nudge.sender.offsets import OffsetTracker
from nudge.sender.pool import Mailer
from nudge.sender.render import Renderer
from nudge.sender.retry import read_retry_headers, retry_topics
from nudge.sender.suppression import SUPPRESSIONS_TOPIC, Gate
from nudge.sender.tables import TableFollower
from nudge.sender.throttle import DomainThrottle
from nudge.sender.timeliness import MarketingWindow
from nudge.settings import Settings
from nudge.topics import Topics

log = structlog.get_logger("nudge.sender")
COMMIT_INTERVAL = 0.2
LAG_INTERVAL = 10.0  # seconds between consumer-lag samples (nudge_consumer_lag_messages)
DRAIN_TIMEOUT = 60.0
# Outcome and `sending` records wait up to 10 ms to share a produce request: against 2 ms, the
# broker spent 0.62x the CPU per mail and the sender 0.88x, 1.14x the mails/s (median of 12
# alternating rounds, docs/sender.md). The longer wait holds each mail's send slot longer, so
# there are 8 slots per SMTP connection instead of 4.
PRODUCER_LINGER_MS = 10
SLOTS_PER_CONNECTION = 8


class KafkaOutputs(Outputs):
    """`Outputs` on an aiokafka producer: every write is awaited until the broker acknowledges."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def write_many(self, writes: Sequence[Write]) -> None:
        # Enqueue all first (they join one batch within the linger), then wait for every ack:
        # the outcome counts as recorded only when all of them are durable.
        send = self._producer.send
        futures = [
            await send(topic, value=value, key=key, headers=headers)
            for topic, key, value, headers in writes
        ]
        for future in futures:
            await future


class SenderService:
    """One sender process: consumer group member, SMTP pool user, outcome writer."""

    def __init__(
        self, settings: Settings, *, mailer: Mailer, window: MarketingWindow | None = None
    ) -> None:
        self.settings = settings
        self.window = window
        self.topics = Topics(settings.topic_prefix)
        self.mailer = mailer
        self.ledger = KeyLedger()
        self.gate = Gate(
            withdrawal_horizon=(window or MarketingWindow()).longest_grace
            + timedelta(milliseconds=WITHDRAWAL_MARGIN_MS)
        )
        self.tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self.ready = False
        self.fatal: BaseException | None = None
        self._tasks: dict[asyncio.Task[None], tuple[TopicPartition, int]] = {}
        self._waiting: set[asyncio.Task[None]] = set()
        self._paused: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._follower: TableFollower | None = None

    @property
    def source_topics(self) -> list[str]:
        return [self.topics.send_commands, *retry_topics(self.topics)]

    @property
    def state_topics(self) -> dict[str, str]:
        return state_topics(self.topics)

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until `stop` is set (or a fatal error); 0 after a clean drain, 1 otherwise."""
        settings = self.settings
        state = self.state_topics
        await prepare_topics(settings)
        await wait_for_group_coordinator(settings, self.topics.sender_group)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=PRODUCER_LINGER_MS,
            partitioner=partition_for,  # aiokafka's choice of partition, computed faster
        )
        await producer.start()
        follower = TableFollower(
            settings.kafka_bootstrap_servers,
            {
                state["ledger"]: self.ledger.apply,
                state["suppressions"]: self.gate.apply_suppression,
                state["policy"]: self.gate.apply_policy,
            },
        )
        self._follower = follower
        consumer: AIOKafkaConsumer | None = None
        try:
            await follower.start()
            await follower.caught_up()
            ambiguous = self.ledger.ambiguous()
            metrics.SENDER_AMBIGUOUS_KEYS.set(ambiguous)
            if ambiguous:
                log.warning(
                    "sender.ambiguous_keys",
                    count=ambiguous,
                    note="handed to SMTP before a crash, no reply recorded: resent",
                )
            log.info(
                "sender.state_loaded",
                keys=len(self.ledger.states),
                ambiguous_keys=ambiguous,
                suppressed=len(self.gate.suppressed),
                policies=len(self.gate.policies),
            )
            delivery = Delivery(
                settings,
                mailer=self.mailer,
                renderer=Renderer(),
                ledger=self.ledger,
                gate=self.gate,
                outputs=KafkaOutputs(producer),
                throttle=DomainThrottle(
                    settings.domain_throttles, sessions=settings.domain_sessions
                ),
                window=self.window,
                slots=max(16, SLOTS_PER_CONNECTION * settings.smtp_max_connections),
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                group_id=self.topics.sender_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # Range assignment gives one member the same partition number of every source
                # topic; keyed by user_id, a command and its retries meet in one process.
                partition_assignment_strategy=(RangePartitionAssignor,),
                max_poll_records=500,
            )
            self._consumer = consumer
            await consumer.start()
            consumer.subscribe(self.source_topics, listener=_Rebalance(self))
            self.ready = True
            await self._serve(consumer, delivery, stop)
        finally:
            self.ready = False
            await self._drain()
            if consumer is not None:
                await self._commit()
                await consumer.stop()
            await follower.stop()
            await producer.stop()
            await self.mailer.close()
        if self.fatal is not None:
            log.error("sender.stopped_on_error", error=repr(self.fatal))
            return 1
        log.info("sender.stopped")
        return 0

    async def _serve(
        self, consumer: AIOKafkaConsumer, delivery: Delivery, stop: asyncio.Event
    ) -> None:
        last_commit = last_lag = time.monotonic()
        cap = max(1, self.settings.sender_concurrency)
        while not stop.is_set() and self.fatal is None:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    self._spawn(delivery, tp, record)
                if self.tracker.in_flight(tp) >= cap and tp not in self._paused:
                    consumer.pause(tp)
                    self._paused.add(tp)
            for tp in list(self._paused):
                if self.tracker.in_flight(tp) < cap // 2 + 1:
                    if tp in consumer.assignment():
                        consumer.resume(tp)
                    self._paused.discard(tp)
            if time.monotonic() - last_commit >= COMMIT_INTERVAL:
                await self._commit()
                last_commit = time.monotonic()
            if time.monotonic() - last_lag >= LAG_INTERVAL:
                last_lag = time.monotonic()
                try:
                    await metrics.sample_consumer_lag("sender", consumer)
                except KafkaError as err:  # a gap in a gauge, never a reason to stop sending
                    log.warning("sender.lag_unavailable", error=repr(err))

    def _spawn(
        self, delivery: Delivery, tp: TopicPartition, record: ConsumerRecord[Any, Any]
    ) -> None:
        attempt, due_at = read_retry_headers(record.headers or ())
        self.tracker.started(tp, record.offset)
        metrics.SENDER_IN_FLIGHT.inc()

        async def run() -> None:
            try:
                wait = due_at - time.time()
                if wait > 0:
                    self._waiting.add(task)
                    await asyncio.sleep(wait)
                    self._waiting.discard(task)
                await delivery.handle(record, attempt)
                self.tracker.finished(tp, record.offset)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # Kafka down or a bug: stop, leave the offset uncommitted
                log.exception("sender.fatal", topic=tp.topic, partition=tp.partition)
                if self.fatal is None:
                    self.fatal = err
            finally:
                metrics.SENDER_IN_FLIGHT.dec()

        task = asyncio.create_task(run())
        self._tasks[task] = (tp, record.offset)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._waiting.discard(task)

    async def _commit(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self.tracker.committable().items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as err:  # a rebalance in progress: the next commit will carry them
            log.warning("sender.commit_failed", error=repr(err))
            return
        self.tracker.mark_committed(offsets)

    async def _drain(self, partitions: set[TopicPartition] | None = None) -> None:
        """Cancel tasks waiting for a retry's due time; let sends in progress finish."""
        tasks = [t for t, (tp, _) in self._tasks.items() if partitions is None or tp in partitions]
        for task in tasks:
            if task in self._waiting:
                task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._drain(revoked)
        await self._commit()
        self.tracker.forget(revoked)
        self._paused -= revoked

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._follower is not None and assigned:
            await self._follower.caught_up()


def state_topics(topics: Topics) -> dict[str, str]:
    """The compacted topics the sender rebuilds its views from at start (`TableFollower`)."""
    return {
        "ledger": topics.internal(LEDGER_TOPIC),
        "suppressions": topics.internal(SUPPRESSIONS_TOPIC),
        "policy": topics.internal(CONTACT_POLICY_TOPIC),
    }


async def prepare_topics(settings: Settings) -> None:
    """Create every topic the sender reads or writes, if missing: the public ones, the retry
    tiers, and the state topics compacted (the ledger also time-limited), each with
    `topic_partitions`. Tests call it before they publish: a topic the broker creates on first
    use gets the broker's default partition count, and the state topics no compaction."""
    topics = Topics(settings.topic_prefix)
    state = state_topics(topics)
    await _ensure_ledger_topic(settings, state["ledger"])
    await ensure_topics(
        settings,
        [*public_topics(topics), *retry_topics(topics), *state.values()],
        compacted=state.values(),
    )


async def _ensure_ledger_topic(settings: Settings, name: str) -> None:
    """Create the ledger topic compacted *and* time-limited (`ensure_topics` only compacts)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        if name in set(await admin.list_topics()):
            return
        topic = NewTopic(
            name=name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            topic_configs=dict(LEDGER_TOPIC_CONFIG),
        )
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([topic])
    finally:
        await admin.close()
    await wait_until_serving(settings, [name])


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: SenderService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.on_assigned(set(assigned))
