"""The wire contract of SPEC §2–§4: what is a valid event, and what each invalid one is called."""

from __future__ import annotations

from dataclasses import fields
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
ORDER = {"order_id": "o-1", "total": 4800, "currency": "JPY", "items": []}


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
        (
            event(properties={"product_id": "p" * 201, "name": "n", "price": 1, "quantity": 1}),
            "invalid_field",
            "properties.product_id",
        ),
        (
            event(type="order.completed", properties={**ORDER, "order_id": "o" * 201}),
            "invalid_field",
            "properties.order_id",
        ),
        (
            event(
                type="order.completed",
                properties={**ORDER, "items": [{"product_id": "p"}, {"product_id": "p" * 201}]},
            ),
            "invalid_field",
            "properties.items[1].product_id",
        ),
        (
            event(type="product.viewed", properties={"product_id": "p", "order_id": "o" * 201}),
            "invalid_field",
            "properties.order_id",
        ),
        (
            event(
                type="password_reset.requested",
                properties={"reset_url": "https://x/" + "r" * 2039, "expires_at": "soon"},
            ),
            "invalid_field",
            "properties.reset_url",
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


def test_ids_and_links_up_to_their_bounds_are_valid() -> None:
    """Product and order ids of 200 characters and a 2,048-character link are accepted whole
    (the state keeps ids and mails carry links as they are, so longer ones are refused above)."""
    order = decode_event(
        event(
            type="order.completed",
            properties={**ORDER, "order_id": "o" * 200, "items": [{"product_id": "p" * 200}]},
        )
    )
    assert order.properties["order_id"] == "o" * 200
    link = "https://x/" + "r" * 2038
    reset = decode_event(
        event(type="password_reset.requested", properties={"reset_url": link, "expires_at": "s"})
    )
    assert reset.properties["reset_url"] == link


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-11-22T10:15:00+09:00", datetime(2026, 11, 22, 10, 15, tzinfo=JST)),
        ("2026-11-22t01:15:00z", datetime(2026, 11, 22, 1, 15, tzinfo=UTC)),
        ("2026-11-22T01:15:00.25Z", datetime(2026, 11, 22, 1, 15, 0, 250000, tzinfo=UTC)),
        ("2026-11-22T01:15:00.1234567890Z", datetime(2026, 11, 22, 1, 15, 0, 123456, tzinfo=UTC)),
        ("2026-11-22T01:15:00-00:00", datetime(2026, 11, 22, 1, 15, tzinfo=UTC)),
    ],
)
def test_occurred_at_is_any_rfc_3339_date_time(occurred_at: str, expected: datetime) -> None:
    """SPEC §2: RFC 3339 with an offset, `T`/`Z` in either case (§5.6 NOTE), any fraction."""
    assert decode_event(event(occurred_at=occurred_at)).occurred_at == expected


@pytest.mark.parametrize(
    ("occurred_at", "names"),
    [
        ("2026-11-22 10:15:00+09:00", "YYYY-MM-DDThh:mm:ss"),
        ("2026-11-22T10:15:00+0900", "±hh:mm"),
        ("2026-W47-7T10:15:00+09:00", "not RFC 3339"),
        ("20261122T101500+0900", "not RFC 3339"),
        ("2026-11-22T10:15+09:00", "not RFC 3339"),
        ("2026-11-22T10:15:00,5+09:00", "not RFC 3339"),
        ("2016-12-31T23:59:60Z", "not RFC 3339"),
        ("2026-11-22T25:15:00+09:00", "not RFC 3339"),
        ("2026-11-22T10:15:00+09:60", "not RFC 3339"),
        ("2026-13-45T10:15:00+09:00", "month must be in 1..12"),
        ("2026-02-29T10:15:00+09:00", "day is out of range"),
        ("0001-01-01T00:00:00+01:00", "years 1000–2999"),
        ("9999-12-31T23:59:59Z", "years 1000–2999"),
    ],
)
def test_occurred_at_outside_rfc_3339_is_a_bad_timestamp(occurred_at: str, names: str) -> None:
    """What `datetime.fromisoformat` also reads (a space, +0900, week dates, no seconds) is not
    RFC 3339; years far from now would overflow the journeys' arithmetic."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(event(occurred_at=occurred_at))
    assert caught.value.reason == "bad_timestamp"
    assert names in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"this line is not JSON", "not JSON: unexpected text at column 1"),
        (b'{"event_id": "e-1", "type": tru}', "not JSON: unexpected text at column 29"),
        (b'{"event_id": "e-1"', "not JSON: unexpected end of data at column 19"),
        (
            b'{\n  "event_id" "e-1"}',
            "not JSON: unexpected character, expected ':' after key at line 2, column 14",
        ),
        (b"", "not JSON: the value is empty"),
    ],
)
def test_a_line_that_is_not_json_says_so_and_where(raw: bytes, message: str) -> None:
    """Not orjson's guess from the first letter ("invalid literal, expected 'true'")."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(raw)
    assert (caught.value.reason, str(caught.value)) == ("malformed_json", message)
    with pytest.raises(InvalidCommand) as command:
        decode_command(raw)  # the sender's reader says the same
    assert str(command.value) == message


def test_null_profile_fields_are_not_given() -> None:
    """`"name": null` is the field left out: the profile keeps None, "not in this event"."""
    user = {"email": "hana@example.jp", "name": None, "birthday": None, "timezone": None}
    decoded = decode_event(event(user=user))
    assert decoded.user is not None
    assert (decoded.user.name, decoded.user.birthday, decoded.user.timezone) == (None, None, None)
    assert decode_event(event(user=None)).user is None


def test_an_integral_quantity_written_as_a_float_is_an_integer() -> None:
    """JSON Schema's `integer` takes 2.0, so Nudge does, as the integer 2."""
    properties = {"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 2.0}
    quantity = decode_event(event(properties=properties)).properties["quantity"]
    assert (quantity, type(quantity)) == (2, int)


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        ({"timezone": "Asia"}, "invalid_field"),  # a folder of the database: IsADirectoryError
        ({"timezone": "Asia/"}, "invalid_field"),
        ({"timezone": "zone.tab"}, "invalid_field"),
        ({"birthday": "19900501"}, "invalid_field"),
        ({"birthday": "1990-W18-2"}, "invalid_field"),
        ({"email": "hana\ufeff@example.jp"}, "invalid_field"),
    ],
)
def test_profile_fields_have_the_schema_shape(user: dict[str, str], reason: str) -> None:
    """What the database or `date.fromisoformat` would also take, but the schema does not."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(event(user=user))
    assert caught.value.reason == reason


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


def test_encoded_commands_and_deliveries_carry_every_field_in_declaration_order() -> None:
    """The encoders list fields one by one (faster than a loop): none may be missed or moved."""
    command_keys = list(_command())
    delivery_keys = list(_delivery())
    assert command_keys == [f.name for f in fields(SendCommand)]
    assert delivery_keys == [f.name for f in fields(DeliveryRecord)]


# -- every field, every wrong JSON type ---------------------------------------------------------
# A field of the wrong type is an InvalidEvent / InvalidCommand naming the field (dead-lettered),
# never a TypeError or AttributeError that would stop the processor or the sender.
JSON_VALUES: dict[str, object] = {
    "string": "x", "number": 7, "bool": True, "null": None, "list": ["x"], "object": {"x": 1},
}  # fmt: skip
TEXT, OPTIONAL_TEXT = {"string"}, {"string", "null"}
EVENT_BASES: dict[str, dict[str, object]] = {
    "cart.item_added": orjson.loads(event()),
    "user.unsubscribed": orjson.loads(event(type="user.unsubscribed", properties={"scope": "all"})),
    "order.completed": orjson.loads(event(type="order.completed", properties={
        "order_id": "o-1", "total": 4800, "currency": "JPY", "items": []})),
}  # fmt: skip
# (event type, field, the JSON types it accepts)
EVENT_FIELDS = [
    ("cart.item_added", "event_id", TEXT),
    ("cart.item_added", "type", TEXT),
    ("cart.item_added", "user_id", TEXT),
    ("cart.item_added", "occurred_at", TEXT),
    ("cart.item_added", "properties", {"object", "null"}),
    ("cart.item_added", "properties.product_id", TEXT),
    ("cart.item_added", "properties.name", TEXT),
    ("cart.item_added", "properties.price", {"number"}),
    ("cart.item_added", "properties.quantity", {"number"}),
    ("cart.item_added", "user", {"object", "null"}),
    ("cart.item_added", "user.email", OPTIONAL_TEXT),
    ("cart.item_added", "user.name", OPTIONAL_TEXT),
    ("cart.item_added", "user.locale", OPTIONAL_TEXT),
    ("cart.item_added", "user.timezone", OPTIONAL_TEXT),
    ("cart.item_added", "user.birthday", OPTIONAL_TEXT),
    ("cart.item_added", "user.marketing_consent", {"bool", "null"}),
    ("user.unsubscribed", "properties.scope", TEXT),
    ("order.completed", "properties.order_id", TEXT),
    ("order.completed", "properties.total", {"number"}),
    ("order.completed", "properties.currency", TEXT),
    ("order.completed", "properties.items", {"list"}),
]
COMMAND_FIELDS = [
    *((name, TEXT) for name in ("command_id", "idempotency_key", "user_id", "journey", "step",
                                "kind", "channel", "template", "locale", "to", "created_at")),
    ("variables", {"object", "null"}),
    ("variant", OPTIONAL_TEXT),
    ("trigger_event_id", OPTIONAL_TEXT),
]  # fmt: skip
DELIVERY_FIELDS = [
    *((name, TEXT) for name in ("command_id", "idempotency_key", "user_id", "status", "at")),
    ("attempt", {"number", "null"}),
    ("smtp_code", {"number", "null"}),
    *((name, OPTIONAL_TEXT) for name in ("smtp_enhanced_code", "message_id", "journey", "step",
                                         "variant", "kind", "to", "reason")),
]  # fmt: skip


def _wrong(fields: list[tuple[str, set[str]]]) -> list[tuple[str, str]]:
    return [(f, t) for f, accepts in fields for t in JSON_VALUES if t not in accepts]


def _with(data: dict[str, object], path: str, json_type: str) -> bytes:
    """`data` with the field at `path` (e.g. `user.email`) set to a value of `json_type`."""
    copy = orjson.loads(orjson.dumps(data))
    *parents, name = path.split(".")
    target = copy
    for parent in parents:
        target = target[parent]
    target[name] = JSON_VALUES[json_type]
    return orjson.dumps(copy)


@pytest.mark.parametrize(
    ("event_type", "path", "json_type"),
    [(e, f, t) for e, f, accepts in EVENT_FIELDS for t in JSON_VALUES if t not in accepts],
)
def test_an_event_field_of_the_wrong_type_is_an_invalid_event(
    event_type: str, path: str, json_type: str
) -> None:
    """Every event field given each JSON type it does not accept: InvalidEvent naming it."""
    with pytest.raises(InvalidEvent) as caught:
        decode_event(_with(EVENT_BASES[event_type], path, json_type))
    assert path in str(caught.value)


def _command() -> dict[str, object]:
    return orjson.loads(encode_command(SendCommand(
        command_id="c-1", idempotency_key="k-1", user_id="u-42", journey="welcome",
        step="welcome", kind="transactional", template="welcome", locale="ja",
        to="hana@example.jp", created_at=datetime(2026, 11, 22, 11, 15, tzinfo=JST),
        variant="a", trigger_event_id="e-1")))  # fmt: skip


def _delivery() -> dict[str, object]:
    return orjson.loads(encode_delivery(DeliveryRecord(
        command_id="c-1", idempotency_key="k-1", user_id="u-42", status="bounced", attempt=2,
        at=datetime(2026, 11, 22, 2, 0, tzinfo=UTC), smtp_code=550, smtp_enhanced_code="5.1.1",
        message_id="<m@x>", journey="welcome", step="welcome", variant="a",
        kind="transactional", to="hana@example.jp", reason="bounced")))  # fmt: skip


@pytest.mark.parametrize(("path", "json_type"), _wrong(COMMAND_FIELDS))
def test_a_command_field_of_the_wrong_type_is_an_invalid_command(path: str, json_type: str) -> None:
    """Every send command field given each JSON type it does not accept: InvalidCommand."""
    with pytest.raises(InvalidCommand) as caught:
        decode_command(_with(_command(), path, json_type))
    assert path in str(caught.value)


@pytest.mark.parametrize(("path", "json_type"), _wrong(DELIVERY_FIELDS))
def test_a_delivery_field_of_the_wrong_type_is_an_invalid_command(
    path: str, json_type: str
) -> None:
    """Every delivery record field given each JSON type it does not accept: InvalidCommand."""
    with pytest.raises(InvalidCommand) as caught:
        decode_delivery(_with(_delivery(), path, json_type))
    assert path in str(caught.value)


def test_the_wrong_type_tables_start_from_valid_records() -> None:
    """The bases the tables change are valid, so each failure above is the changed field's."""
    for base in EVENT_BASES.values():
        decode_event(orjson.dumps(base))
    assert decode_command(orjson.dumps(_command())).variant == "a"
    assert decode_delivery(orjson.dumps(_delivery())).attempt == 2
    # Null where null means "not given": the documented defaults.
    assert decode_delivery(_with(_delivery(), "attempt", "null")).attempt == 1
    assert decode_command(_with(_command(), "variables", "null")).variables == {}
