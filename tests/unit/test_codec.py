"""The wire contract of SPEC §2–§4: what is a valid event, and what each invalid one is called."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import orjson
import pytest

from nudge.codec import (
    decode_command,
    decode_delivery,
    decode_event,
    encode_command,
    encode_delivery,
    encode_event,
)
from nudge.commands import DeliveryRecord, SendCommand
from nudge.errors import InvalidCommand, InvalidEvent

JST = timezone(timedelta(hours=9))


def event(**overrides: object) -> bytes:
    data: dict[str, object] = {
        "event_id": "e-1",
        "type": "cart.item_added",
        "user_id": "u-42",
        "occurred_at": "2026-11-22T10:15:00+09:00",
        "properties": {"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 1},
        "user": {
            "email": "hana@example.jp",
            "name": "山田 花子",
            "locale": "ja",
            "timezone": "Asia/Tokyo",
            "birthday": "1990-05-01",
            "marketing_consent": True,
        },
    }
    data.update(overrides)
    return orjson.dumps({k: v for k, v in data.items() if v is not ...})


def test_the_spec_example_decodes_to_typed_fields() -> None:
    """The example of SPEC §2 is valid and every field arrives typed."""
    decoded = decode_event(event())
    assert decoded.occurred_at == datetime(2026, 11, 22, 10, 15, tzinfo=JST)
    assert decoded.user is not None
    assert decoded.user.birthday == date(1990, 5, 1)
    assert decoded.user.marketing_consent is True
    assert decoded.properties["price"] == 4800


def test_an_event_survives_encode_then_decode() -> None:
    """Encoding is the inverse of decoding."""
    decoded = decode_event(event())
    assert decode_event(encode_event(decoded)) == decoded


def test_unknown_types_decode_so_they_can_be_counted_and_ignored() -> None:
    """An unknown type is not invalid: apps evolve before Nudge does."""
    assert decode_event(event(type="wishlist.added", properties={})).type == "wishlist.added"


@pytest.mark.parametrize(
    ("raw", "reason", "names"),
    [
        (b"{not json", "malformed_json", "JSON"),
        (b"[1, 2]", "not_an_object", "object"),
        (event(user_id=...), "missing_field", "user_id"),
        (event(event_id=...), "missing_field", "event_id"),
        (event(user_id=42), "wrong_type", "user_id"),
        (event(occurred_at="yesterday"), "bad_timestamp", "occurred_at"),
        (event(occurred_at="2026-11-22T10:15:00"), "bad_timestamp", "offset"),
        (event(properties={"product_id": "p"}), "missing_property", "properties.name"),
        (
            event(properties={"product_id": "p", "name": "n", "price": "4800", "quantity": 1}),
            "wrong_type",
            "properties.price",
        ),
        (event(user={"name": "Eve\r\nBcc: all@example.com"}), "invalid_field", "user.name"),
        (event(user={"email": "not-an-address"}), "invalid_field", "user.email"),
        (event(user={"timezone": "Mars/Olympus"}), "invalid_field", "user.timezone"),
        (event(user={"marketing_consent": "yes"}), "wrong_type", "marketing_consent"),
        (event(properties={"pad": "x" * 70_000}), "too_large", "bytes"),
        (None, "empty", "no value"),
        (
            event(type="user.unsubscribed", properties={"scope": "everything"}),
            "invalid_field",
            "scope",
        ),
    ],
)
def test_invalid_events_are_rejected_with_a_reason_and_the_field(
    raw: bytes | None, reason: str, names: str
) -> None:
    """Each way an event can be invalid has a countable reason and a message naming the field."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    assert caught.value.reason == reason
    assert names in str(caught.value)


def test_a_send_command_round_trips() -> None:
    """Commands are written by the processor and read back by the sender unchanged."""
    command = SendCommand(
        command_id="c-1",
        idempotency_key="k-1",
        user_id="u-42",
        journey="cart_abandonment",
        step="reminder_1",
        kind="marketing",
        template="cart_reminder_1",
        locale="ja",
        to="hana@example.jp",
        variables={"name": "山田 花子", "items": []},
        created_at=datetime(2026, 11, 22, 11, 15, tzinfo=JST),
        trigger_event_id="e-7f3a",
    )
    assert decode_command(encode_command(command)) == command


def test_a_command_without_a_kind_is_invalid() -> None:
    """A command missing a required field cannot be sent and is reported as such."""
    with pytest.raises(InvalidCommand, match="kind"):
        decode_command(b'{"command_id": "c"}')


def test_a_delivery_record_round_trips() -> None:
    """Delivery records carry SPEC §4 fields plus the command's journey for feedback."""
    record = DeliveryRecord(
        command_id="c-1",
        idempotency_key="k-1",
        user_id="u-42",
        status="bounced",
        attempt=1,
        at=datetime(2026, 11, 22, 2, 0, tzinfo=UTC),
        smtp_code=550,
        smtp_enhanced_code="5.1.1",
        journey="welcome",
        step="welcome",
        kind="transactional",
        to="hana@example.jp",
    )
    assert decode_delivery(encode_delivery(record)) == record
