"""The sender's per-command decisions, driven through its seams with recording fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from nudge.codec import decode_command, decode_delivery, encode_command
from nudge.commands import DeliveryRecord, SendCommand
from nudge.deadletter import read_headers
from nudge.errors import InvalidCommand
from nudge.events import Event
from nudge.journeys.runs import subject
from nudge.policy import ContactPolicy, decode_policy, encode_policy, subject_text
from nudge.sender import deliver
from nudge.sender.classify import CONNECTION_ERROR, Reply
from nudge.sender.deliver import Delivery, RecordingOutputs, Write
from nudge.sender.ledger import KeyLedger, encode_entry
from nudge.sender.pool import RecordingMailer
from nudge.sender.render import RenderedMail, Renderer, sample_variables
from nudge.sender.retry import read_retry_headers
from nudge.sender.suppression import Gate
from nudge.sender.tables import apply_records
from nudge.sender.throttle import DomainThrottle
from nudge.settings import Settings

from .factories import MADE, command

NOW = datetime(2026, 11, 22, 1, 15, tzinfo=UTC)
SETTINGS = Settings(topic_prefix="t.", token_secret=b"k" * 32, send_max_attempts=3)


@dataclass
class Record:
    """The shape of an aiokafka ConsumerRecord, as much as the sender reads."""

    value: bytes | None
    key: bytes | None = b"u-42"
    topic: str = "t.send-commands"
    partition: int = 0
    offset: int = 7


@dataclass
class Rig:
    delivery: Delivery
    mailer: RecordingMailer
    outputs: RecordingOutputs

    def on(self, topic: str) -> list[tuple[bytes | None, bytes | None, dict[str, str]]]:
        return [(k, v, read_headers(h)) for t, k, v, h in self.outputs.records if t == topic]

    def deliveries(self) -> list[DeliveryRecord]:
        return [decode_delivery(v) for _, v, _ in self.on("t.deliveries")]


def make_rig(
    *,
    renderer: Renderer | None = None,
    throttle: DomainThrottle | None = None,
    outputs: RecordingOutputs | None = None,
    now: datetime = NOW,
    mailer: RecordingMailer | None = None,
) -> Rig:
    mailer = mailer or RecordingMailer()
    outputs = outputs or RecordingOutputs()
    delivery = Delivery(
        SETTINGS,
        mailer=mailer,
        renderer=renderer or Renderer(),
        ledger=KeyLedger(),
        gate=Gate(),
        outputs=outputs,
        throttle=throttle or DomainThrottle([]),
        clock=lambda: now,
        rand=lambda: 0.5,
    )
    return Rig(delivery=delivery, mailer=mailer, outputs=outputs)


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_accepted_mail_is_recorded_sending_then_sent(rig: Rig) -> None:
    """The ledger gets `sending` before DATA and `sent` after; the delivery record says sent."""
    await rig.delivery.handle(Record(encode_command(command())), 1)
    states = [orjson.loads(v)["state"] for _, v, _ in rig.on("t.internal.sent-keys")]
    assert states == ["sending", "sent"]
    (record,) = rig.deliveries()
    assert (record.status, record.smtp_code, record.attempt) == ("sent", 250, 1)
    assert record.message_id
    assert record.journey == "order_confirmation"
    assert len(rig.mailer.sent) == 1


async def test_a_sent_key_is_a_duplicate_and_sends_nothing(rig: Rig) -> None:
    """Redelivery of a key already sent: `duplicate`, no second mail."""
    await rig.delivery.handle(Record(encode_command(command())), 1)
    await rig.delivery.handle(Record(encode_command(command(command_id="c-2"))), 1)
    assert [r.status for r in rig.deliveries()] == ["sent", "duplicate"]
    assert len(rig.mailer.sent) == 1


class SlowMailer(RecordingMailer):
    """A mailer that takes a few event-loop turns to answer, as a real server does."""

    async def send(self, envelope_from: str, recipient: str, raw: bytes, **kw: Any) -> Reply:
        for _ in range(3):
            await asyncio.sleep(0)
        return await super().send(envelope_from, recipient, raw, **kw)


async def test_two_copies_of_one_key_in_flight_at_once_send_one_mail() -> None:
    """A redelivery racing the original (same batch, or a retry) waits for the key's lock and
    finds it sent: one mail, then `duplicate`; no lock is left behind."""
    rig = make_rig()
    rig.delivery.mailer = rig.mailer = SlowMailer()
    raw = encode_command(command())
    await asyncio.gather(
        rig.delivery.handle(Record(raw, offset=7), 1),
        rig.delivery.handle(Record(raw, offset=8), 1),
    )
    assert [r.status for r in rig.deliveries()] == ["sent", "duplicate"]
    assert len(rig.mailer.sent) == 1
    assert not rig.delivery.locks._locks


async def test_the_key_lock_serialises_one_key_and_forgets_cancelled_waiters() -> None:
    """Holders of one key take turns in order, other keys do not wait, and a waiter cancelled
    while waiting leaves nothing behind."""
    locks = deliver.KeyLocks()
    events: list[str] = []
    release = asyncio.Event()

    async def hold(key: str, name: str) -> None:
        async with locks.hold(key):
            events.append(f"{name} in")
            if name == "a1":
                await release.wait()
            events.append(f"{name} out")

    first = asyncio.create_task(hold("a", "a1"))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold("a", "a2"))
    cancelled = asyncio.create_task(hold("a", "a3"))
    await hold("b", "b1")  # another key: not held up by "a"
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, second, return_exceptions=True)
    assert events == ["a1 in", "b1 in", "b1 out", "a1 out", "a2 in", "a2 out"]
    assert cancelled.cancelled()
    assert not locks._locks


async def test_temporary_failure_schedules_a_durable_retry(rig: Rig) -> None:
    """451: the original bytes go to retry tier 1 with attempt 2; the record says deferred."""
    rig.mailer.replies.append(Reply(code=451, message="4.3.0 busy"))
    raw = encode_command(command())
    await rig.delivery.handle(Record(raw), 1)
    ((key, value, _),) = rig.on("t.internal.send-retry-1")
    assert (key, value) == (b"u-42", raw)
    headers = next(h for t, _, _, h in rig.outputs.records if t == "t.internal.send-retry-1")
    attempt, due = read_retry_headers(headers)
    assert attempt == 2
    assert due == pytest.approx(NOW.timestamp() + SETTINGS.send_retry_base_seconds)
    (record,) = rig.deliveries()
    assert (record.status, record.smtp_code, record.smtp_enhanced_code) == (
        "deferred",
        451,
        "4.3.0",
    )


async def test_connection_errors_are_retried_without_a_code(rig: Rig) -> None:
    """No reply at all is transient too; the record carries no SMTP code."""
    rig.mailer.replies.append(Reply(code=CONNECTION_ERROR, message="refused", stage="connect"))
    await rig.delivery.handle(Record(encode_command(command())), 1)
    assert rig.on("t.internal.send-retry-1")
    assert [(r.status, r.smtp_code) for r in rig.deliveries()] == [("deferred", None)]


async def test_the_last_attempt_dead_letters_with_retries_exhausted(rig: Rig) -> None:
    """At `send_max_attempts` a transient failure is final: DLT + failed."""
    rig.mailer.replies.append(Reply(code=421, message="4.7.0 later", stage="mail"))
    await rig.delivery.handle(Record(encode_command(command())), 3)
    ((_, _, headers),) = rig.on("t.send-commands-dlt")
    assert headers["nudge-error-reason"] == "retries_exhausted"
    assert headers["nudge-source-offset"] == "7"
    assert [(r.status, r.reason) for r in rig.deliveries()] == [("failed", "retries_exhausted")]
    assert not rig.on("t.internal.send-retry-3")


async def test_bad_address_bounces_and_suppresses(rig: Rig) -> None:
    """5.1.1 at RCPT: bounced, the address suppressed durably, the next mail suppressed."""
    rig.mailer.replies.append(Reply(code=550, message="5.1.1 unknown", stage="rcpt"))
    await rig.delivery.handle(Record(encode_command(command())), 1)
    ((key, value, _),) = rig.on("t.internal.suppressions")
    assert key == b"hana@example.jp"
    assert orjson.loads(value)["reason"] == "bounce"
    await rig.delivery.handle(
        Record(encode_command(command(idempotency_key="k-2", to="HANA@example.jp"))), 1
    )
    assert [r.status for r in rig.deliveries()] == ["bounced", "suppressed"]
    assert rig.mailer.sent == []


async def test_other_permanent_failures_dead_letter(rig: Rig) -> None:
    """554 5.7.1 (policy) fails the command with its reason, no retry, no suppression."""
    rig.mailer.replies.append(Reply(code=554, message="5.7.1 spam", stage="data"))
    await rig.delivery.handle(Record(encode_command(command())), 1)
    ((_, _, headers),) = rig.on("t.send-commands-dlt")
    assert headers["nudge-error-reason"] == "smtp_554"
    assert not rig.on("t.internal.suppressions")
    states = [orjson.loads(v)["state"] for _, v, _ in rig.on("t.internal.sent-keys")]
    assert states == ["sending", "failed"]


async def test_contact_policy_stops_marketing_but_not_transactional(rig: Rig) -> None:
    """An unsubscribed user gets transactional mail only; a deleted user gets nothing."""
    policy = ContactPolicy(user_id="u-42", marketing_allowed=False, deleted=False, at=NOW)
    rig.delivery.gate.apply_policy("u-42", encode_policy(policy))
    marketing = command(
        idempotency_key="k-m", kind="marketing", template="winback_2", variables={"name": None}
    )
    await rig.delivery.handle(Record(encode_command(marketing)), 1)
    await rig.delivery.handle(Record(encode_command(command())), 1)
    deleted = ContactPolicy(user_id="u-42", marketing_allowed=False, deleted=True, at=NOW)
    rig.delivery.gate.apply_policy("u-42", encode_policy(deleted))
    await rig.delivery.handle(Record(encode_command(command(idempotency_key="k-3"))), 1)
    assert [(r.status, r.reason) for r in rig.deliveries()] == [
        ("suppressed", "no_marketing_consent"),
        ("sent", None),
        ("suppressed", "user_deleted"),
    ]


async def test_a_reminder_made_before_the_purchase_is_not_sent_after_it(rig: Rig) -> None:
    """The order at 10:14 withdrew cart_abandonment (the processor's policy record): the
    reminder made at 10:10, held back until now, is `suppressed` / `exited`. A reminder of a
    new cart made after the order is sent, and so is another journey's mail made before it."""
    ordered = NOW - timedelta(minutes=1)
    policy = ContactPolicy(
        user_id="u-42",
        marketing_allowed=True,
        deleted=False,
        at=ordered,
        withdrawn=("cart_abandonment",),
    )
    rig.delivery.gate.apply_policy("u-42", encode_policy(policy))
    reminder = {
        "kind": "marketing",
        "journey": "cart_abandonment",
        "step": "reminder_1",
        "template": "cart_reminder_1",
        "variables": sample_variables()["cart_reminder_1"],
    }
    before = command(idempotency_key="k-before", created_at=MADE - timedelta(minutes=5), **reminder)
    after = command(idempotency_key="k-after", created_at=MADE - timedelta(seconds=30), **reminder)
    other = command(
        idempotency_key="k-other",
        kind="marketing",
        journey="winback",
        step="winback_2",
        template="winback_2",
        variables={"name": None},
        created_at=MADE - timedelta(minutes=5),
    )
    exited = {"journey": "cart_abandonment", "reason": "exited"}
    counted = sample("nudge_sender_suppressed_total", **exited)
    for each in (before, after, other):
        await rig.delivery.handle(Record(encode_command(each)), 1)
    assert [(r.idempotency_key, r.status, r.reason) for r in rig.deliveries()] == [
        ("k-before", "suppressed", "exited"),
        ("k-after", "sent", None),
        ("k-other", "sent", None),
    ]
    assert sample("nudge_sender_suppressed_total", **exited) == counted + 1


async def test_adding_the_product_withdraws_only_that_products_offer(rig: Rig) -> None:
    """The user put p-7 in the cart at 10:14 (a `same: product` exit): the browse offer for p-7
    made before it is `suppressed` / `exited`; an offer for another product still goes."""
    policy = ContactPolicy(
        user_id="u-42",
        marketing_allowed=True,
        deleted=False,
        at=NOW - timedelta(minutes=1),
        withdrawn_subjects=(("browse_abandonment", "product_id", "p-7"),),
    )
    rig.delivery.gate.apply_policy("u-42", encode_policy(policy))
    for key, product in (("k-p7", "p-7"), ("k-p9", "p-9")):
        offer = command(
            idempotency_key=key,
            kind="marketing",
            journey="browse_abandonment",
            step="offer",
            template="browse_offer",
            variables={**sample_variables()["browse_offer"], "product_id": product},
            created_at=MADE - timedelta(minutes=5),
        )
        await rig.delivery.handle(Record(encode_command(offer)), 1)
    assert [(r.idempotency_key, r.status, r.reason) for r in rig.deliveries()] == [
        ("k-p7", "suppressed", "exited"),
        ("k-p9", "sent", None),
    ]


@pytest.mark.parametrize("value", ["p-7", 7, 7.5, True, None, ["p-7"], {"id": 7}])
def test_the_sender_reads_a_subject_as_the_engine_does(value: object) -> None:
    """`subject_text` (sender, on a command's variable) and `journeys.runs.subject` (engine, on
    the exit event's property) agree on every JSON type a variable can have."""
    event = Event(
        event_id="e-1",
        type="cart.item_added",
        user_id="u-42",
        occurred_at=NOW,
        properties={"product_id": value},
    )
    assert subject_text(value) == subject(event, "product")


def test_withdrawals_add_up_until_the_longest_grace_has_passed() -> None:
    """Consent fields are replaced by each policy record; withdrawals add up per journey and are
    forgotten once no mail made before them could still be on time; a tombstone clears all."""
    gate = Gate(withdrawal_horizon=timedelta(hours=1))

    def publish(at: datetime, *withdrawn: str, allowed: bool = True) -> None:
        policy = ContactPolicy(
            user_id="u-42", marketing_allowed=allowed, deleted=False, at=at, withdrawn=withdrawn
        )
        gate.apply_policy("u-42", encode_policy(policy))

    publish(NOW, "cart_abandonment")
    publish(NOW + timedelta(minutes=10), "browse_abandonment")
    publish(NOW + timedelta(minutes=20))  # a consent-only record keeps both
    assert gate.withdrawn["u-42"] == {
        ("cart_abandonment", "", ""): NOW,
        ("browse_abandonment", "", ""): NOW + timedelta(minutes=10),
    }
    publish(NOW + timedelta(minutes=65))  # past the horizon for the first, not the second
    assert gate.withdrawn["u-42"] == {("browse_abandonment", "", ""): NOW + timedelta(minutes=10)}
    gate.apply_policy("u-42", None)
    assert "u-42" not in gate.withdrawn
    assert "u-42" not in gate.policies


def test_a_policy_record_from_before_withdrawals_still_reads() -> None:
    """Records written by an older processor have no `withdrawn`: they withdraw nothing."""
    raw = orjson.dumps(
        {"user_id": "u-42", "marketing_allowed": True, "deleted": False, "at": NOW.isoformat()}
    )
    assert decode_policy(raw).withdrawn == ()
    for bad in (b'"cart_abandonment"', b"[1]", b'[{"journey":"cart_abandonment"}]'):
        with pytest.raises(InvalidCommand, match="withdrawn"):
            decode_policy(raw[:-1] + b',"withdrawn":' + bad + b"}")
    assert decode_policy(raw).withdrawn_subjects == ()
    for bad in (b'["browse_abandonment"]', b'[["browse_abandonment", "product_id"]]',
                b'[["browse_abandonment", "product_id", 7]]',
                b'[["browse_abandonment", "product_id", ""]]',
                b'[["browse_abandonment", "", "p-7"]]'):  # fmt: skip
        with pytest.raises(InvalidCommand, match="withdrawn_subjects"):
            decode_policy(raw[:-1] + b',"withdrawn_subjects":' + bad + b"}")


async def test_delivery_records_are_keyed_by_user_id(rig: Rig) -> None:
    """SPEC §1: `deliveries` is keyed by user_id (the processor places state by key), for every
    outcome: sent, duplicate, suppressed."""
    await rig.delivery.handle(Record(encode_command(command())), 1)
    await rig.delivery.handle(Record(encode_command(command())), 1)
    deleted = ContactPolicy(user_id="u-42", marketing_allowed=False, deleted=True, at=NOW)
    rig.delivery.gate.apply_policy("u-42", encode_policy(deleted))
    await rig.delivery.handle(Record(encode_command(command(idempotency_key="k-2"))), 1)
    records = rig.on("t.deliveries")
    assert [decode_delivery(v).status for _, v, _ in records] == ["sent", "duplicate", "suppressed"]
    assert {key for key, _, _ in records} == {b"u-42"}


TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("made", "attempt", "reason"),
    [
        # greylisted at 20:59, retried 90 s later: the quiet hours have begun
        ("2026-11-22T20:59:00", "2026-11-22T21:00:30", "quiet_hours"),
        # the sender was down for two hours: not sent in a burst when it comes back
        ("2026-11-22T10:00:00", "2026-11-22T12:00:00", "stale"),
    ],
    ids=["retried into the quiet hours", "waited past its grace"],
)
async def test_marketing_mail_that_waited_in_the_sender_keeps_spec_timing(
    made: str, attempt: str, reason: str
) -> None:
    """SPEC §8: marketing mail never goes between 21:00 and 09:00 local nor more than its grace
    late, also after waiting for a retry or a backlog; transactional mail still goes."""
    rig = make_rig(now=datetime.fromisoformat(attempt).replace(tzinfo=TOKYO))
    created_at = datetime.fromisoformat(made).replace(tzinfo=TOKYO)
    marketing = command(
        idempotency_key="k-m",
        journey="cart_abandonment",
        step="reminder_1",
        kind="marketing",
        template="cart_reminder_1",
        variables=sample_variables()["cart_reminder_1"],
        created_at=created_at,
    )
    await rig.delivery.handle(Record(encode_command(marketing)), 2)
    await rig.delivery.handle(Record(encode_command(command(created_at=created_at))), 2)
    assert [(r.journey, r.status, r.reason) for r in rig.deliveries()] == [
        ("cart_abandonment", "suppressed", reason),
        ("order_confirmation", "sent", None),
    ]
    assert len(rig.mailer.sent) == 1


async def test_undecodable_and_unrenderable_commands_are_dead_lettered(rig: Rig) -> None:
    """Bad JSON and a missing variable go to the DLT with reasons; nothing is sent."""
    await rig.delivery.handle(Record(b"{nope"), 1)
    await rig.delivery.handle(Record(encode_command(command(variables={}))), 1)
    reasons = [h["nudge-error-reason"] for _, _, h in rig.on("t.send-commands-dlt")]
    assert reasons == ["malformed_json", "missing_variable"]
    assert [(r.status, r.reason) for r in rig.deliveries()] == [("failed", "missing_variable")]
    assert rig.mailer.sent == []


@pytest.mark.parametrize("to", ["ｈａｎａ@example.jp", "hana@日本.jp"])
async def test_a_non_ascii_recipient_is_dead_lettered_and_the_next_command_is_sent(
    rig: Rig, to: str
) -> None:
    """No SMTPUTF8: the command fails as `invalid_address` (DLT + `failed`), nothing stops."""
    await rig.delivery.handle(Record(encode_command(command(to=to))), 1)
    await rig.delivery.handle(Record(encode_command(command(idempotency_key="k-2")), offset=8), 1)
    ((_, _, headers),) = rig.on("t.send-commands-dlt")
    assert headers["nudge-error-reason"] == "invalid_address"
    assert "field `to`" in headers["nudge-error-message"]
    assert [(r.status, r.reason) for r in rig.deliveries()] == [
        ("failed", "invalid_address"),
        ("sent", None),
    ]
    assert [recipient for _, recipient, _ in rig.mailer.sent] == ["hana@example.jp"]


@pytest.mark.parametrize("field", ["journey", "step", "idempotency_key"])
async def test_a_non_ascii_header_value_is_dead_lettered(rig: Rig, field: str) -> None:
    """A journey, step or key that cannot go into its X-Nudge-* header: `invalid_header`."""
    await rig.delivery.handle(Record(encode_command(command(**{field: "春のセール"}))), 1)
    ((_, _, headers),) = rig.on("t.send-commands-dlt")
    assert headers["nudge-error-reason"] == "invalid_header"
    assert [(r.status, r.reason) for r in rig.deliveries()] == [("failed", "invalid_header")]
    assert rig.mailer.sent == []


class BrokenRenderer(Renderer):
    """A renderer with a bug that shows only on some input (a fake, not a mock)."""

    def render(
        self, template: str, locale: str | None, variables: Mapping[str, Any]
    ) -> RenderedMail:
        if variables.get("order_id") == "o-bug":
            raise KeyError("a bug")
        return super().render(template, locale, variables)


async def test_an_unexpected_error_composing_dead_letters_that_command_only() -> None:
    """A bug in compose fails its command as `processing_error` (traceback logged, counted);
    the service does not stop, and the next command is sent."""
    rig = make_rig(renderer=BrokenRenderer())
    variables = {**sample_variables()["order_confirmation"], "order_id": "o-bug"}
    before = sample("nudge_processing_errors_total", source="send-commands")
    with capture_logs() as logged:
        await rig.delivery.handle(Record(encode_command(command(variables=variables))), 1)
    await rig.delivery.handle(Record(encode_command(command(idempotency_key="k-2")), offset=8), 1)
    ((_, _, headers),) = rig.on("t.send-commands-dlt")
    assert headers["nudge-error-reason"] == "processing_error"
    assert "KeyError" in headers["nudge-error-message"]
    assert [(r.status, r.reason) for r in rig.deliveries()] == [
        ("failed", "processing_error"),
        ("sent", None),
    ]
    assert len(rig.mailer.sent) == 1
    (error,) = [e for e in logged if e["event"] == "sender.processing_error"]
    assert isinstance(error["exc_info"], KeyError)
    assert sample("nudge_processing_errors_total", source="send-commands") == before + 1


async def test_an_unexpected_error_decoding_dead_letters_that_record_only(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the decoder on one record's bytes: `processing_error` on the DLT, no stop."""

    def decode(raw: bytes | None) -> SendCommand:
        if raw == b'{"kind": ["marketing"]}':
            raise TypeError("unhashable type: 'list'")
        return decode_command(raw)

    monkeypatch.setattr(deliver, "decode_command", decode)
    with capture_logs() as logged:
        await rig.delivery.handle(Record(b'{"kind": ["marketing"]}'), 1)
    await rig.delivery.handle(Record(encode_command(command()), offset=8), 1)
    ((_, value, headers),) = rig.on("t.send-commands-dlt")
    assert value == b'{"kind": ["marketing"]}'
    assert headers["nudge-error-reason"] == "processing_error"
    assert [r.status for r in rig.deliveries()] == ["sent"]
    assert any(e.get("exc_info") for e in logged if e["event"] == "sender.processing_error")


class FailingOutputs(RecordingOutputs):
    """Outputs whose broker is gone."""

    async def write_many(self, writes: Sequence[Write]) -> None:
        raise ConnectionError("broker unreachable")


async def test_an_output_error_still_stops_the_command() -> None:
    """Kafka errors are not the record's fault: they propagate (the service stops, uncommitted),
    also while a bad command is being dead-lettered."""
    rig = make_rig(outputs=FailingOutputs())
    with pytest.raises(ConnectionError):
        await rig.delivery.handle(Record(encode_command(command(to="ｈａｎａ@example.jp"))), 1)


def withdraw_consent(gate: Gate) -> None:
    policy = ContactPolicy(user_id="u-42", marketing_allowed=False, deleted=False, at=NOW)
    gate.apply_policy("u-42", encode_policy(policy))


def suppress_address(gate: Gate) -> None:
    gate.apply_suppression("a@docomo.ne.jp", b'{"reason":"bounce"}')


@pytest.mark.parametrize(
    ("meanwhile", "status", "reason"),
    [
        (withdraw_consent, "suppressed", "no_marketing_consent"),
        (suppress_address, "suppressed", "suppressed_address"),
    ],
)
async def test_the_gate_is_checked_again_after_the_throttle_wait(
    meanwhile: Callable[[Gate], None], status: str, reason: str
) -> None:
    """An unsubscribe or a bounce that arrives while a mail waits for its carrier's bucket
    stops it: checked right before sending, not only before the wait."""
    gate_holder: list[Gate] = []

    async def sleep(seconds: float) -> None:
        meanwhile(gate_holder[0])

    throttle = DomainThrottle([("docomo.ne.jp", 1.0)], clock=lambda: 0.0, sleep=sleep)
    bucket = throttle.bucket_for("a@docomo.ne.jp")
    assert bucket is not None
    bucket.take(0.0)  # this second's token is gone: the next mail waits
    rig = make_rig(throttle=throttle)
    gate_holder.append(rig.delivery.gate)
    marketing = command(
        to="a@docomo.ne.jp",
        kind="marketing",
        template="cart_reminder_1",
        variables=sample_variables()["cart_reminder_1"],
    )
    await rig.delivery.handle(Record(encode_command(marketing)), 1)
    assert rig.mailer.sent == []
    assert [(r.status, r.reason) for r in rig.deliveries()] == [(status, reason)]
    assert not rig.on("t.internal.sent-keys")  # never `sending`


class HeldMailer(RecordingMailer):
    """Holds every SMTP transaction open until `release` is set, noting how many are open."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.open: list[str] = []
        self.expected = expected
        self.reached = asyncio.Event()  # set once `expected` transactions are open

    async def send(
        self, envelope_from: str, recipient: str, raw: bytes, *, before_data: Any
    ) -> Reply:
        self.open.append(recipient)
        if len(self.open) >= self.expected:
            self.reached.set()
        await self.release.wait()
        self.open.remove(recipient)
        return await super().send(envelope_from, recipient, raw, before_data=before_data)


async def test_a_carriers_session_cap_holds_its_mail_but_not_other_domains() -> None:
    """With one session for docomo.ne.jp, the second docomo mail waits for the first's
    transaction to end; a gmail.com mail goes alongside. All three are sent in the end."""
    mailer = HeldMailer(expected=2)
    rig = make_rig(throttle=DomainThrottle([], sessions=[("docomo.ne.jp", 1)]), mailer=mailer)
    addresses = ("a@docomo.ne.jp", "b@docomo.ne.jp", "c@gmail.com")
    handling = [
        asyncio.create_task(
            rig.delivery.handle(Record(encode_command(command(idempotency_key=f"k-{i}", to=to))), 1)
        )
        for i, to in enumerate(addresses)
    ]
    async with asyncio.timeout(5):  # the two that may go are in their transaction
        await mailer.reached.wait()
    await asyncio.sleep(0.05)  # and the third stays out
    assert sorted(mailer.open) == ["a@docomo.ne.jp", "c@gmail.com"]
    mailer.release.set()
    await asyncio.gather(*handling)
    assert sorted(recipient for _, recipient, _ in mailer.sent) == sorted(addresses)


async def test_a_key_sent_elsewhere_during_the_wait_is_a_duplicate() -> None:
    """Another instance's `sent` read while the mail waited: `duplicate`, no second mail."""
    ledgers: list[KeyLedger] = []

    async def sleep(seconds: float) -> None:
        ledgers[0].apply("k-1", encode_entry("sent", command_id="c-1", at=NOW))

    throttle = DomainThrottle([("example.jp", 1.0)], clock=lambda: 0.0, sleep=sleep)
    bucket = throttle.bucket_for("hana@example.jp")
    assert bucket is not None
    bucket.take(0.0)
    rig = make_rig(throttle=throttle)
    ledgers.append(rig.delivery.ledger)
    await rig.delivery.handle(Record(encode_command(command())), 1)
    assert rig.mailer.sent == []
    assert [(r.status, r.reason) for r in rig.deliveries()] == [("duplicate", "already_sent")]


async def test_a_link_too_long_to_track_is_dead_lettered(rig: Rig) -> None:
    """A click token verification would refuse: `link_too_long` on the DLT, the link named."""
    variables = {**sample_variables()["browse_offer"], "product_id": "p" * 3500}
    offer = command(kind="marketing", template="browse_offer", variables=variables)
    await rig.delivery.handle(Record(encode_command(offer)), 1)
    ((_, _, headers),) = rig.on("t.send-commands-dlt")
    assert headers["nudge-error-reason"] == "link_too_long"
    assert "/products/ppp" in headers["nudge-error-message"]
    assert [(r.status, r.reason) for r in rig.deliveries()] == [("failed", "link_too_long")]
    assert rig.mailer.sent == []


def test_ledger_keeps_a_final_state_against_late_records() -> None:
    """A `sending` read after `sent` (another instance, replay order) never undoes `sent`."""
    ledger = KeyLedger()
    ledger.record("k", "sending")
    assert ledger.ambiguous() == 1
    assert not ledger.is_done("k")
    ledger.record("k", "sent")
    ledger.record("k", "sending")
    assert ledger.is_done("k")
    assert ledger.ambiguous() == 0
    ledger.apply("k", None)
    assert ledger.state("k") is None


def test_ledger_forgets_keys_after_its_window() -> None:
    """Memory holds the keys of the last window, not of all time; newer keys stay."""
    now = [0.0]
    ledger = KeyLedger(window=100.0, clock=lambda: now[0])
    ledger.record("old", "sent")
    now[0] = 50.0
    ledger.record("newer", "sending")
    ledger.record("newer", "sent")
    now[0] = 120.0
    ledger.record("newest", "sent")
    assert ledger.state("old") is None
    assert ledger.is_done("newer")
    assert ledger.is_done("newest")


def test_an_unreadable_policy_record_leaves_the_previous_policy_and_withdrawals() -> None:
    """A contact-policy record the gate cannot read raises a clear error (the follower logs it
    with its topic, partition and offset) and changes nothing: the user's earlier policy and
    withdrawals still hold."""
    gate = Gate()
    policy = ContactPolicy(
        user_id="u-42",
        marketing_allowed=False,
        deleted=False,
        at=NOW,
        withdrawn=("cart_abandonment",),
    )
    gate.apply_policy("u-42", encode_policy(policy))
    with pytest.raises(InvalidCommand, match="unreadable contact-policy record"):
        gate.apply_policy("u-42", b'{"user_id": "u-42", "withdrawn": "cart_abandonment"}')
    assert gate.policies["u-42"] == policy
    assert gate.withdrawn["u-42"] == {("cart_abandonment", "", ""): NOW}


def test_the_follower_logs_an_unreadable_record_and_applies_the_next() -> None:
    """The table follower skips a record its callback cannot read, naming where it is, and
    goes on with the following records."""
    applied: list[tuple[str, bytes | None]] = []

    def apply(key: str, raw: bytes | None) -> None:
        if raw == b"bad":
            raise InvalidCommand("unreadable contact-policy record: not JSON")
        applied.append((key, raw))

    tp = TopicPartition("t.internal.contact-policy", 0)
    records = [ConsumerRecordStub(b"u-1", b"bad", 5), ConsumerRecordStub(b"u-2", b"good", 6)]
    with capture_logs() as logs:
        assert apply_records(apply, tp, records) == 2
    assert applied == [("u-2", b"good")]
    [warning] = [e for e in logs if e["event"] == "sender.unreadable_state_record"]
    assert (warning["topic"], warning["partition"], warning["offset"]) == (tp.topic, 0, 5)
    assert "not JSON" in warning["error"]


@dataclass
class ConsumerRecordStub:
    key: bytes | None
    value: bytes | None
    offset: int
