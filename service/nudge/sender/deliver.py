"""One send command, start to outcome: the decisions of the sender, over two seams.

`Delivery.handle` decodes the record, takes the idempotency key's lock (two copies of one command
in this process never race), checks the ledger (already sent → `duplicate`), the suppression
list and contact policy, and for marketing mail the quiet hours and the grace (→ `suppressed`),
waits for the recipient domain's token bucket and session cap and for a send slot, checks all
that once more (it may have changed during the waits), renders and builds the mail (a broken
template or a bad address → dead-letter + `failed`), records `sending` in the ledger
(acknowledged before the SMTP transaction starts), sends through the `Mailer`, classifies the
reply and records the outcome:
the ledger, a delivery record, and a retry, suppression or dead letter. It returns only when
every one of those writes is acknowledged — then, and only then, may the offset be committed.

An unexpected exception while decoding or composing (pure functions of the record) dead-letters
that one command as `processing_error`, logged with its traceback; an exception from `Outputs`
(Kafka) propagates, and the service stops without committing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from nudge import metrics
from nudge.codec import decode_command, encode_delivery
from nudge.commands import DeliveryRecord, DeliveryStatus, SendCommand
from nudge.deadletter import Source, headers
from nudge.errors import InvalidCommand, PermanentError
from nudge.logs import mask_email
from nudge.sender.classify import CONNECTION_ERROR, Reply, Verdict, classify
from nudge.sender.compose import Composed, compose
from nudge.sender.ledger import LEDGER_TOPIC, KeyLedger, KeyState, encode_entry
from nudge.sender.pool import Mailer
from nudge.sender.render import Renderer
from nudge.sender.retry import plan_retry, retry_headers
from nudge.sender.suppression import SUPPRESSIONS_TOPIC, Gate, address_key, encode_suppression
from nudge.sender.throttle import DomainThrottle
from nudge.sender.timeliness import MarketingWindow
from nudge.settings import Settings
from nudge.topics import Topics

log = structlog.get_logger("nudge.sender")


Write = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]
"""One record to produce: (topic, key, value, headers)."""


class Outputs(Protocol):
    """Where outcomes go (Kafka in production); `write_many` returns once all writes are durable.

    One call for the two to four records of an outcome: they share one produce request and one
    wait for the broker, with no task per record (`asyncio.gather` made two per mail).
    """

    async def write_many(self, writes: Sequence[Write]) -> None: ...


class RecordingOutputs:
    """A fake `Outputs` for unit tests: a list of (topic, key, value, headers)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def write_many(self, writes: Sequence[Write]) -> None:
        for topic, key, value, extra in writes:
            self.records.append((topic, key, value, list(extra or [])))


class KeyLocks:
    """One asyncio lock per idempotency key in use, dropped when nobody holds or waits for it.

    `async with locks.hold(key):` — a plain context manager object: the `asynccontextmanager`
    generator it replaces cost more per mail than the lock itself (docs/sender.md, Performance).
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> _KeyHold:
        return _KeyHold(self._locks, key)


class _KeyHold:
    __slots__ = ("_key", "_locks")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        locks, key = self._locks, self._key
        entry = locks.get(key)
        lock, users = entry if entry is not None else (asyncio.Lock(), 0)
        locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._locks[self._key][0].release()
        self._leave()

    def _leave(self) -> None:
        locks, key = self._locks, self._key
        lock, users = locks[key]
        if users <= 1:
            del locks[key]
        else:
            locks[key] = (lock, users - 1)


def _processing_error(
    err: Exception, doing: str, record: Any, fields: dict[str, Any] | None = None
) -> PermanentError:
    """Log `err` with its traceback, count it, and wrap it for the dead-letter topic.

    Decoding and composing are pure functions of the record: an unexpected exception there would
    fail again on every redelivery, so stopping the sender (and pinning the offset) would only
    turn one bad record into a stopped partition. Output errors stay fatal: they are not here.
    """
    log.error(
        "sender.processing_error",
        doing=doing,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        exc_info=err,
        **(fields or {}),
    )
    metrics.PROCESSING_ERRORS.labels(source="send-commands").inc()
    return PermanentError(
        f"{doing} failed unexpectedly ({type(err).__name__}: {str(err)[:200]}); a bug in the "
        "sender for this input: see the `sender.processing_error` log line for the traceback",
        reason="processing_error",
    )


async def _recorded() -> None:
    """The `before_data` hook: "sending" is already acknowledged when the transaction starts."""


class Delivery:
    """The per-command logic of the sender; stateless apart from the shared views it is given."""

    def __init__(
        self,
        settings: Settings,
        *,
        mailer: Mailer,
        renderer: Renderer,
        ledger: KeyLedger,
        gate: Gate,
        outputs: Outputs,
        throttle: DomainThrottle,
        window: MarketingWindow | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
        slots: int = 32,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self._ledger_topic = self.topics.internal(LEDGER_TOPIC)
        self.mailer = mailer
        self.renderer = renderer
        self.ledger = ledger
        self.gate = gate
        self.outputs = outputs
        self.throttle = throttle
        # The journeys file's quiet hours and graces (the processor's); the shipped ones if None.
        self.window = window or MarketingWindow()
        self.clock = clock
        self.rand = rand
        self.locks = KeyLocks()
        self._attempts = metrics.CounterChildren(metrics.SMTP_ATTEMPTS)  # by result
        self._deliveries = metrics.CounterChildren(metrics.DELIVERIES)  # by status, journey, …
        self._suppressed = metrics.CounterChildren(metrics.SENDER_SUPPRESSED)  # by journey, reason
        # Bounds the mails between render and SMTP reply. Small (a few per SMTP connection):
        # rendering far ahead of the connections fills the event loop with CPU work that delays
        # every SMTP reply (docs/sender.md, Performance).
        # Taken after the domain throttle, so mail waiting for a slow carrier's bucket never
        # holds up mail to other domains.
        self.slots = asyncio.Semaphore(max(1, slots))

    async def handle(self, record: Any, attempt: int) -> None:
        """Process one consumed record (a command, or a retry of one) to a recorded outcome."""
        try:
            command = decode_command(record.value)
        except InvalidCommand as err:
            log.warning("sender.invalid_command", reason=err.reason, error=str(err))
            await self.outputs.write_many([self._dead_letter(record, err)])
            return
        except Exception as err:  # a bug on this record's bytes: dead-letter it, keep going
            error = _processing_error(err, "decoding the command", record)
            await self.outputs.write_many([self._dead_letter(record, error)])
            return
        # Plain keyword arguments for the one log line per outcome, not `log.bind(...)`: binding
        # builds a logger per mail (twice, with the reply), even when the level filters it out.
        fields: dict[str, Any] = {
            "command_id": command.command_id,
            "user_id": command.user_id,
            "journey": command.journey,
            "step": command.step,
            "to": mask_email(command.to),
            "attempt": attempt,
        }
        async with self.locks.hold(command.idempotency_key):
            await self._deliver(command, record, attempt, fields)

    async def _deliver(
        self,
        command: SendCommand,
        record: Any,
        attempt: int,
        fields: dict[str, Any],
    ) -> None:
        if await self._stopped(command, attempt, fields):
            return
        # The domain's bucket, then its session cap, then a send slot: mail waiting for a busy
        # carrier holds no slot, and its session is held only from the slot to the reply.
        await self.throttle.acquire(command.to)
        async with self.throttle.session(command.to), self.slots:
            sent = await self._transaction(command, record, attempt, fields)
        if sent is None:
            return
        composed, reply = sent
        verdict = classify(reply)
        await self._outcome(command, record, attempt, composed, reply, verdict, True)
        log.info(
            "sender.outcome",
            smtp_code=reply.code,
            stage=reply.stage,
            action=verdict.action,
            reason=verdict.reason,
            **fields,
        )

    async def _transaction(
        self, command: SendCommand, record: Any, attempt: int, fields: dict[str, Any]
    ) -> tuple[Composed, Reply] | None:
        """With a send slot: check again, render, record `sending`, send; None when stopped or
        dead-lettered (recorded)."""
        # Again after the waits, right before `sending`: an unsubscribe, a deletion, a bounce
        # of another mail to this address or another instance's `sent` may have arrived while
        # this mail waited for its domain's bucket or a slot. No await until `sending`.
        if await self._stopped(command, attempt, fields):
            return None
        try:
            composed = compose(
                command, settings=self.settings, renderer=self.renderer, now=self.clock()
            )
        except Exception as err:
            if isinstance(err, PermanentError):
                log.warning("sender.unrenderable", reason=err.reason, error=str(err), **fields)
                error = err
            else:  # compose is pure: a bug on this command's data; dead-letter it, keep going
                error = _processing_error(err, "composing the mail", record, fields)
            await self.outputs.write_many(
                [
                    self._dead_letter(record, error),
                    self._record(command, "failed", attempt, reason=error.reason),
                ]
            )
            return None
        # "sending" must be durable before DATA. It is awaited *before* a pooled connection
        # is taken: the broker round trip (tens of ms on a busy host) then never holds an
        # SMTP connection, and the `slots` mails in flight share one produce request. The
        # price: after a crash, mails that had not reached DATA yet (at most `slots`) also
        # look ambiguous and are resent, though never sent: the count is an upper bound.
        await self.outputs.write_many([self._ledger(command, "sending")])
        reply = await self.mailer.send(
            composed.envelope_from,
            composed.recipient,
            composed.raw,
            before_data=_recorded,
        )
        return composed, reply

    async def _stopped(self, command: SendCommand, attempt: int, fields: dict[str, Any]) -> bool:
        """Record `duplicate` (key already sent) or `suppressed` (gate; a marketing mail in the
        quiet hours or past its grace) and say so; else False."""
        if self.ledger.is_done(command.idempotency_key):
            log.info("sender.duplicate", **fields)
            await self.outputs.write_many(
                [self._record(command, "duplicate", attempt, reason="already_sent")]
            )
            return True
        blocked = self.gate.blocked(command) or self.window.closed(command, self.clock())
        if blocked is not None:
            log.info("sender.suppressed", reason=blocked, **fields)
            self._suppressed(command.journey, blocked).inc()
            await self.outputs.write_many(
                [self._record(command, "suppressed", attempt, reason=blocked)]
            )
            return True
        return False

    async def _outcome(
        self,
        command: SendCommand,
        record: Any,
        attempt: int,
        composed: Composed,
        reply: Reply,
        verdict: Verdict,
        marked: bool,
    ) -> None:
        code = reply.code if reply.code != CONNECTION_ERROR else None
        common: dict[str, Any] = {"smtp_code": code, "smtp_enhanced_code": verdict.enhanced}
        writes: list[Write] = []
        if verdict.action == "sent":
            self._attempts("sent").inc()
            writes += [
                self._ledger(command, "sent"),
                self._record(command, "sent", attempt, message_id=composed.message_id, **common),
            ]
        elif verdict.action == "retry":
            result = "connection_error" if reply.code == CONNECTION_ERROR else "deferred"
            self._attempts(result).inc()
            if marked:
                writes.append(self._ledger(command, "deferred"))
            if attempt >= self.settings.send_max_attempts:
                error = PermanentError(
                    f"gave up after {attempt} attempts; last reply {reply.code} "
                    f"{reply.message[:200]!r} at {reply.stage}",
                    reason="retries_exhausted",
                )
                writes += [
                    self._dead_letter(record, error),
                    self._record(command, "failed", attempt, reason="retries_exhausted", **common),
                ]
            else:
                plan = plan_retry(
                    topics=self.topics,
                    failed_attempt=attempt,
                    now=self.clock().timestamp(),
                    base_seconds=self.settings.send_retry_base_seconds,
                    rand=self.rand(),
                )
                metrics.RETRIES.inc()
                writes += [
                    (
                        plan.topic,
                        record.key,
                        record.value,
                        retry_headers(plan, f"{reply.code} {reply.message}"),
                    ),
                    self._record(command, "deferred", attempt, reason=verdict.reason, **common),
                ]
        elif verdict.action == "bounce":
            self._attempts("bounced").inc()
            metrics.SUPPRESSIONS.labels(reason="bounce").inc()
            address = address_key(command.to)
            value = encode_suppression(
                address, reason="bounce", code=verdict.enhanced, at=self.clock()
            )
            self.gate.apply_suppression(address, value)
            topic = self.topics.internal(SUPPRESSIONS_TOPIC)
            writes += [
                (topic, address.encode(), value, None),
                self._record(command, "bounced", attempt, reason=verdict.reason, **common),
            ]
            if marked:
                writes.append(self._ledger(command, "bounced"))
        else:
            self._attempts("failed").inc()
            error = PermanentError(
                f"the SMTP server refused the message permanently: {reply.code} "
                f"{reply.message[:200]!r} at {reply.stage}",
                reason=verdict.reason,
            )
            writes += [
                self._dead_letter(record, error),
                self._record(command, "failed", attempt, reason=verdict.reason, **common),
            ]
            if marked:
                writes.append(self._ledger(command, "failed"))
        await self.outputs.write_many(writes)

    def _ledger(self, command: SendCommand, state: KeyState) -> Write:
        """Record `state` in the in-memory view now; the returned write makes it durable."""
        self.ledger.record(command.idempotency_key, state)
        value = encode_entry(state, command_id=command.command_id, at=self.clock())
        return (self._ledger_topic, command.idempotency_key.encode(), value, None)

    def _record(
        self,
        command: SendCommand,
        status: DeliveryStatus,
        attempt: int,
        *,
        reason: str | None = None,
        smtp_code: int | None = None,
        smtp_enhanced_code: str | None = None,
        message_id: str | None = None,
    ) -> Write:
        record = DeliveryRecord(
            command_id=command.command_id,
            idempotency_key=command.idempotency_key,
            user_id=command.user_id,
            status=status,
            attempt=attempt,
            at=self.clock(),
            smtp_code=smtp_code,
            smtp_enhanced_code=smtp_enhanced_code,
            message_id=message_id,
            journey=command.journey,
            step=command.step,
            variant=command.variant,
            kind=command.kind,
            to=command.to,
            reason=reason,
        )
        self._deliveries(
            status, command.journey, command.step, command.variant or metrics.NO_VARIANT
        ).inc()
        return (self.topics.deliveries, command.user_id.encode(), encode_delivery(record), None)

    def _dead_letter(self, record: Any, error: PermanentError) -> Write:
        # Where it was read from: built here, for the few records that need it.
        source = Source(topic=record.topic, partition=record.partition, offset=record.offset)
        metrics.DEAD_LETTERED.labels(source="send-commands", reason=error.reason).inc()
        return (
            Topics.dead_letter(self.topics.send_commands),
            record.key,
            record.value,
            headers(error, source, failed_at=self.clock().isoformat()),
        )
