"""The record handler: decode, load state, call the engine, emit, store, count — per batch.

This is the imperative shell around the pure engine, free of Faust so that unit tests drive it
with `testing.py`'s fakes. Three kinds of record arrive, all keyed (or addressed) by the user's
partition: behaviour events, delivery records, and tick messages that fire due timers.

A batch (what the agent's stream buffered, up to a few hundred records) is handled in three steps:
1. decide — every record in order, at one `now` for the batch: decode, read the user's state
   (this batch's own earlier result for the user first), call the engine, collect the records to
   produce and the new state;
2. emit   — produce everything and wait until the broker has acknowledged all of it (a timer
   burst hands its commands to the producer every few hundred users, so that producing overlaps
   deciding; the acknowledgements are still all awaited before step 3);
3. store  — write each changed user's final state once.

Ordering rule (what makes at-least-once lossless): a state that says a step was sent is never
stored before the broker has the command. A crash in between replays the records; the engine makes
the same commands with the same idempotency keys (the sender drops the repeat). The reverse order
could store "reminder sent" and lose the reminder. Waiting once per batch instead of once per
record is what keeps the throughput (docs/processor.md).

Bad input never stops the stream: undecodable records and records whose key is not their user
go to `<topic>-dlt`; an engine failure on one record, or an outcome that cannot be encoded or is
over the size caps (`MAX_STATE_BYTES`, `MAX_OUTPUT_BYTES`), dead-letters that record (reason
`processing_error`, the user's state left as it was) and is logged with its traceback. A timer has
no record to dead-letter: one whose firing fails is logged and tried again later (a minute,
doubling up to an hour). Only the broker and the state store failing leave `handle_batch`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog

from nudge import metrics
from nudge.codec import decode_delivery, decode_event, encode_command
from nudge.errors import InvalidCommand, InvalidEvent, PermanentError
from nudge.events import KNOWN_TYPES
from nudge.policy import encode_policy
from nudge.processor.accounting import count_decisions
from nudge.processor.ports import (
    Clock,
    JourneyEngine,
    Outcome,
    Output,
    Record,
    Sink,
    StateCodec,
    StateStore,
)
from nudge.processor.timers import DueIndex, TickPlanner, peek, to_seconds, unpack
from nudge.processor.timers import pack as pack_value
from nudge.topics import Topics

log = structlog.get_logger("nudge.processor")

REBUILD_YIELD_EVERY: Final = 20_000  # table entries read between yields to the event loop
FIRE_YIELD_EVERY: Final = 250  # timers fired between yields to the event loop
# A timer whose firing fails is tried again after a minute, then after twice as long each time,
# up to once an hour: a fixed engine (or a state the next event repairs) still sends the step,
# and the engine's staleness rule decides whether it is still worth sending by then.
TIMER_RETRY_FIRST: Final = 60.0
TIMER_RETRY_MAX: Final = 3600.0
# The largest state-table value (header + engine state) the handler stores. Its changelog record
# must pass the producer and the broker (the broker refuses records over ~1 MB by default, and a
# refused changelog record stops the worker, on the same record at every restart), and a state
# this big is already abnormal (a dozen cart lines with product names of ~60 KB each). Half the
# broker's default limit leaves ample room for the key and the record's framing. A record whose
# new state is bigger is dead-lettered instead, and the user's state stays as it was.
MAX_STATE_BYTES: Final = 512 * 1024
# The same cap for each send command and policy record (the send-commands topic and the sender
# keep the broker's default limit): a refused one would stop the worker in the same loop.
MAX_OUTPUT_BYTES: Final = MAX_STATE_BYTES


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerConfig:
    """Names and limits the handler needs."""

    topics: Topics
    fire_limit: int = 5_000  # users fired per tick and partition; the rest wait for the next


class ProcessingError(PermanentError):
    """The engine, the stored state or encoding the outcome failed on one record; it is
    dead-lettered, not retried."""

    reason = "processing_error"


class OutcomeTooLarge(ValueError):
    """An outcome's state or one of its records is over its cap (`MAX_STATE_BYTES`,
    `MAX_OUTPUT_BYTES`); nothing of it is stored or produced."""


@dataclass(slots=True)
class Batch:
    """What one batch decided: records to produce, states to store, outcomes to count."""

    outputs: list[Output] = field(default_factory=list)
    sent: int = 0  # outputs already handed to the sink
    acks: list[Awaitable[None]] = field(default_factory=list)  # one per hand-over
    dead: list[tuple[Record, PermanentError]] = field(default_factory=list)
    writes: dict[bytes, tuple[Record, bytes | None]] = field(default_factory=dict)  # None: delete
    outcomes: list[Outcome] = field(default_factory=list)
    timings: list[float] = field(default_factory=list)


class RecordHandler:
    """Handles every record the processor's agent reads; one instance per worker."""

    def __init__(
        self,
        *,
        config: HandlerConfig,
        engine: JourneyEngine,
        codec: StateCodec,
        store: StateStore,
        sink: Sink,
        clock: Clock,
        index: DueIndex,
        planner: TickPlanner,
        assigned: Callable[[], set[int]],
    ) -> None:
        self.config = config
        self.engine = engine
        self.codec = codec
        self.store = store
        self.sink = sink
        self.clock = clock
        self.index = index
        self.planner = planner
        self.assigned = assigned
        topics = config.topics
        self._events = topics.events
        self._deliveries = topics.deliveries
        self._ticks = topics.internal("ticks")
        self._commands = topics.send_commands
        self._policy = topics.internal("contact-policy")
        self._keys: dict[int, int] = {}
        self._consumed: dict[str, Any] = {}  # label children, looked up once per event type
        # partition -> user -> failed firings in a row; by partition, so that a revoked
        # partition's counts go with it (`forget_partitions`)
        self._timer_failures: dict[int, dict[str, int]] = {}

    async def handle(self, record: Record) -> None:
        """Handle one record (a batch of one)."""
        await self.handle_batch([record])

    async def handle_batch(self, records: Sequence[Record]) -> None:
        """Decide for every record, emit and wait for the acknowledgements, then store."""
        batch = Batch()
        # One reading of the clock per batch (a batch is decided within milliseconds, and the
        # clock was ~2 % of a worker's per-event CPU when read per record).
        now = self.clock.now()
        for record in records:
            if record.topic == self._events:
                self._on_event(record, now, batch)
            elif record.topic == self._deliveries:
                self._on_delivery(record, now, batch)
            elif record.topic == self._ticks:
                await self._on_tick(record, batch)
                # A timer burst takes a while and fires at its own `now`: never decide a later
                # record of the batch at an earlier time than a timer fired before it.
                now = self.clock.now()
        for record, error in batch.dead:
            batch.acks.append(await self.sink.dead_letter(record, error, now))
        await self._send(batch)
        for acknowledged in batch.acks:
            await acknowledged
        if batch.writes:
            await self.store.write(
                [(key, value, record) for key, (record, value) in batch.writes.items()]
            )
        for outcome in batch.outcomes:
            self._count(outcome)
        finished = time.perf_counter()
        for started in batch.timings:
            metrics.EVENT_PROCESSING.observe(finished - started)

    # -- deciding ------------------------------------------------------------------------------
    def _on_event(self, record: Record, now: datetime, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            event = decode_event(record.value)
            _check_key(record, event.user_id, InvalidEvent)
        except InvalidEvent as err:
            self._dead_letter(record, err, "events", batch)
            return
        known = event.type in KNOWN_TYPES
        label = event.type if known else "other"
        counter = self._consumed.get(label)
        if counter is None:
            counter = self._consumed[label] = metrics.EVENTS_CONSUMED.labels(label)
        counter.inc()
        if not known:
            metrics.EVENTS_IGNORED.labels("unknown_type").inc()
            return
        raw = self._read(event.user_id.encode(), record, batch)
        try:
            outcome = self.engine.on_event(self._load(raw), event, now)
            self._apply(record, event.user_id, raw, outcome, batch)
        except Exception as err:
            self._processing_error(record, err, "events", event.user_id, batch)
            return
        batch.timings.append(started)

    def _on_delivery(self, record: Record, now: datetime, batch: Batch) -> None:
        try:
            delivery = decode_delivery(record.value)
            _check_key(record, delivery.user_id, InvalidCommand)
        except InvalidCommand as err:
            self._dead_letter(record, err, "deliveries", batch)
            return
        raw = self._read(delivery.user_id.encode(), record, batch)
        try:
            outcome = self.engine.on_delivery(self._load(raw), delivery, now)
            self._apply(record, delivery.user_id, raw, outcome, batch)
        except Exception as err:
            self._processing_error(record, err, "deliveries", delivery.user_id, batch)

    async def _on_tick(self, record: Record, batch: Batch) -> None:
        """Fire the due timers of the tick's partition (loading its index first if needed)."""
        partition = record.partition
        self.planner.done(partition)
        if not self.index.loaded(partition):
            await self.rebuild_index(unstored=batch)
        now = self.clock.now()
        now_s = to_seconds(now)
        due = self.index.pop_due(partition, now_s, self.config.fire_limit)
        for n, (user_id, due_at) in enumerate(due):
            if n % FIRE_YIELD_EVERY == FIRE_YIELD_EVERY - 1:
                # Let the producer send what is decided while the burst goes on (the states are
                # stored after every acknowledgement, as for any batch), and heartbeats through.
                await self._send(batch)
                await asyncio.sleep(0)
            raw = self._read(user_id.encode(), record, batch)
            if raw is None:
                continue
            try:
                stored = unpack(raw)
                if stored.wake_at is None or stored.wake_at > now_s:
                    self.index.set(partition, user_id, stored.wake_at)
                    continue
                metrics.TIMER_LAG.observe(max(0.0, now_s - due_at))
                outcome = self.engine.on_due(self.codec.decode(stored.state), now)
                self._apply(record, user_id, raw, outcome, batch)
            except Exception as err:
                # No record to dead-letter (an engine failure, or an outcome that cannot be
                # encoded or is over a cap): the user's wake-up stays in the table and goes back
                # into the index for a retry later; the traceback tells the operator what to fix.
                metrics.PROCESSING_ERRORS.labels("ticks").inc()
                retry_in = self._timer_failed(partition, user_id)
                self.index.set(partition, user_id, now_s + retry_in)
                log.error(
                    "timer failed",
                    user_id=user_id,
                    failures=self._timer_failures[partition][user_id],
                    retry_in_seconds=retry_in,
                    exc_info=err,
                )
                continue
            failed = self._timer_failures.get(partition)
            if failed:
                failed.pop(user_id, None)
        metrics.PENDING_TIMERS.labels(str(partition)).set(self.index.pending(partition))

    async def rebuild_index(self, unstored: Batch | None = None) -> None:
        """Reload the due index of every assigned partition from the state table.

        `unstored` is the batch being decided: its states are newer than the table's (a user
        decided just before the tick that loads their partition would otherwise keep the
        wake-up the table had, and miss the new one).
        """
        generation = self.index.generation
        wanted = self.assigned()
        self.index.forget(keep=wanted)
        self.forget_partitions(keep=wanted)
        missing = {p for p in wanted if not self.index.loaded(p)}
        counts = dict.fromkeys(missing, 0)
        started = time.perf_counter()
        found: list[tuple[str, float | None, int]] = []
        newer = {} if unstored is None else {k: v for k, (_r, v) in unstored.writes.items()}
        for n, (key, value) in enumerate(self._entries(newer)):
            wake_at, partition = peek(value)
            if partition in counts:
                counts[partition] += 1
                if wake_at is not None:
                    found.append((key.decode("utf-8", "replace"), wake_at, partition))
            if n % REBUILD_YIELD_EVERY == REBUILD_YIELD_EVERY - 1:
                # A million keys take seconds: let heartbeats and the web server run meanwhile.
                await asyncio.sleep(0)
        if self.index.generation != generation:
            return  # a rebalance happened meanwhile: the next tick loads the new assignment
        self.index.load(found, missing)
        for partition, count in counts.items():
            self._keys[partition] = count
            metrics.TABLE_KEYS.labels(str(partition)).set(count)
            metrics.PENDING_TIMERS.labels(str(partition)).set(self.index.pending(partition))
        log.info(
            "due index loaded",
            partitions=sorted(missing),
            users=sum(counts.values()),
            pending=sum(self.index.pending(p) for p in missing),
            seconds=round(time.perf_counter() - started, 3),
        )

    def forget_partitions(self, keep: Set[int]) -> None:
        """Drop what this worker holds about every partition not in `keep` (the assignment after a
        rebalance): its key count and gauges (the worker that took the partition over reports it
        now, and a stale copy here would count it twice in every sum: alerts, dashboard), and its
        users' timer failures (if it comes back, their back-off starts again from a minute)."""
        for partition in self._keys.keys() - keep:
            del self._keys[partition]
        for partition in self._timer_failures.keys() - keep:
            del self._timer_failures[partition]
        metrics.keep_partition_gauges(keep)

    # -- helpers -------------------------------------------------------------------------------
    def _timer_failed(self, partition: int, user_id: str) -> float:
        """Count one more failed firing for the user; seconds until the next try."""
        failed = self._timer_failures.setdefault(partition, {})
        failures = failed[user_id] = failed.get(user_id, 0) + 1
        return min(TIMER_RETRY_MAX, TIMER_RETRY_FIRST * (1 << min(failures - 1, 16)))

    def _entries(self, newer: dict[bytes, bytes | None]) -> Iterator[tuple[bytes, bytes]]:
        """The table's entries with `newer` values (None: deleted) in place of the stored ones."""
        for key, value in self.store.entries():
            if key not in newer:
                yield key, value
        for key, pending in newer.items():
            if pending is not None:
                yield key, pending

    async def _send(self, batch: Batch) -> None:
        if batch.sent < len(batch.outputs):
            batch.acks.append(await self.sink.send(batch.outputs[batch.sent :]))
            batch.sent = len(batch.outputs)

    def _read(self, key: bytes, record: Record, batch: Batch) -> bytes | None:
        if key in batch.writes:
            return batch.writes[key][1]
        return self.store.get(key, record)

    def _load(self, raw: bytes | None) -> Any:
        return None if raw is None else self.codec.decode(unpack(raw).state)

    def _apply(
        self, record: Record, user_id: str, raw: bytes | None, outcome: Outcome, batch: Batch
    ) -> None:
        """Add one outcome to the batch: its records, its state write, its wake-up.

        Whatever can fail on the outcome's data (encoding the state and every record, the size
        caps) runs before the batch or the index is touched: a failure raises and leaves them as
        they were, so the caller can dead-letter the record (or retry the timer) and the batch
        goes on with the user's previous state.
        """
        key = user_id.encode()
        partition = record.partition
        state = outcome.state
        value = None
        wake_s = None
        if state is not None:
            wake_at = outcome.wake_at
            value = pack_value(self.codec.encode(state), wake_at, partition)
            if len(value) > MAX_STATE_BYTES:
                raise OutcomeTooLarge(
                    f"the user's new state is {len(value):,} bytes, over the "
                    f"{MAX_STATE_BYTES:,}-byte cap (handler.MAX_STATE_BYTES): not stored, the "
                    "state stays as it was; look at what this user's events put in it"
                )
            wake_s = to_seconds(wake_at) if wake_at else None
        outputs = None
        if outcome.commands or outcome.policy is not None:  # most records send nothing
            outputs = self._outputs(key, outcome)
        # Nothing below fails on the outcome's data.
        if outputs is not None:
            batch.outputs.extend(outputs)
        batch.outcomes.append(outcome)
        if value is None:
            if raw is not None:
                batch.writes[key] = (record, None)
                self._add_keys(partition, -1)
            self.index.set(partition, user_id, None)
            return
        batch.writes[key] = (record, value)
        if raw is None:
            self._add_keys(partition, 1)
        self.index.set(partition, user_id, wake_s)

    def _outputs(self, key: bytes, outcome: Outcome) -> list[Output]:
        """The outcome's send commands and policy record, encoded and checked against the cap."""
        outputs = [
            Output(topic=self._commands, key=key, value=encode_command(command))
            for command in outcome.commands
        ]
        if outcome.policy is not None:
            outputs.append(Output(topic=self._policy, key=key, value=encode_policy(outcome.policy)))
        for output in outputs:
            if len(output.value) > MAX_OUTPUT_BYTES:
                raise OutcomeTooLarge(
                    f"a record for {output.topic} is {len(output.value):,} bytes, over the "
                    f"{MAX_OUTPUT_BYTES:,}-byte cap (handler.MAX_OUTPUT_BYTES): nothing of this "
                    "outcome is produced or stored"
                )
        return outputs

    def _add_keys(self, partition: int, delta: int) -> None:
        if partition in self._keys:
            self._keys[partition] += delta
            metrics.TABLE_KEYS.labels(str(partition)).set(self._keys[partition])

    @staticmethod
    def _count(outcome: Outcome) -> None:
        for command in outcome.commands:
            metrics.COMMANDS_EMITTED.labels(
                command.journey, command.step, command.variant or metrics.NO_VARIANT
            ).inc()
        count_decisions(outcome.decisions)
        if outcome.policy is not None:
            for journey, _, _ in outcome.policy.withdrawals:
                metrics.WITHDRAWALS.labels(journey).inc()

    def _dead_letter(
        self, record: Record, error: PermanentError, source: str, batch: Batch
    ) -> None:
        metrics.DEAD_LETTERED.labels(source, error.reason).inc()
        log.warning(
            "dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=error.reason,
            error=str(error),
        )
        batch.dead.append((record, error))

    def _processing_error(
        self, record: Record, err: Exception, source: str, user_id: str, batch: Batch
    ) -> None:
        log.error("processing failed", user_id=user_id, topic=record.topic, exc_info=err)
        metrics.PROCESSING_ERRORS.labels(source).inc()
        self._dead_letter(record, ProcessingError(f"{type(err).__name__}: {err}"), source, batch)


def _check_key(
    record: Record, user_id: str, error: type[InvalidEvent] | type[InvalidCommand]
) -> None:
    # State lives in the partition of the record's key: a record keyed otherwise would read and
    # write the user's state in the wrong partition (SPEC §1: key = user_id).
    if record.key != user_id.encode():
        shown = record.key.decode("utf-8", "replace")[:80] if record.key is not None else None
        raise error(
            f"the record key {shown!r} is not the user_id {user_id!r}; publish keyed by user_id",
            reason="key_mismatch",
        )
