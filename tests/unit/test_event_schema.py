"""The published JSON Schema and the processor's decoder agree on what a valid event is."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import orjson
import pytest

from nudge.codec import decode_event
from nudge.errors import InvalidEvent
from nudge.events import KNOWN_TYPES, REQUIRED_PROPERTIES

SCHEMA = json.loads(resources.files("nudge").joinpath("schemas/event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

SPEC_EXAMPLE: dict[str, Any] = {
    "event_id": "e-7f3a",
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

SAMPLE_VALUES = {"str": "x", "int": 1, "float": 1.5, "list": []}


def test_the_schema_is_itself_valid() -> None:
    """The shipped file is a well-formed JSON Schema (draft 2020-12)."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_spec_example_is_valid_for_both() -> None:
    """SPEC §2's example passes the schema and the decoder."""
    VALIDATOR.validate(SPEC_EXAMPLE)
    decode_event(orjson.dumps(SPEC_EXAMPLE))


def test_the_schema_lists_every_known_type() -> None:
    """Apps reading the schema see every type Nudge acts on."""
    assert set(SCHEMA["properties"]["type"]["examples"]) == KNOWN_TYPES


@pytest.mark.parametrize("event_type", sorted(t for t in KNOWN_TYPES if REQUIRED_PROPERTIES[t]))
def test_each_required_property_is_required_by_both(event_type: str) -> None:
    """Dropping any required property of a known type fails the schema and the decoder alike."""
    full = {
        name: SAMPLE_VALUES[types[0].__name__]
        for name, types in REQUIRED_PROPERTIES[event_type].items()
    }
    if event_type == "user.unsubscribed":
        full["scope"] = "marketing"
    base = {**SPEC_EXAMPLE, "type": event_type, "properties": full}
    VALIDATOR.validate(base)
    decode_event(orjson.dumps(base))
    for name in full:
        broken = {**base, "properties": {k: v for k, v in full.items() if k != name}}
        assert not VALIDATOR.is_valid(broken)
        with pytest.raises(InvalidEvent):
            decode_event(orjson.dumps(broken))


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": None},
        {"occurred_at": "2026-11-22 10:15"},
        {"user": {"name": "Eve\r\nBcc: x@example.com"}},
        {"user": {"email": "nope"}},
        {"user": {"marketing_consent": "yes"}},
        {"properties": {**SPEC_EXAMPLE["properties"], "product_id": "p" * 201}},
        {"type": "product.viewed", "properties": {"product_id": "p", "order_id": "o" * 201}},
        {
            "type": "order.completed",
            "properties": {
                "order_id": "o",
                "total": 1,
                "currency": "JPY",
                "items": [{"product_id": "p" * 201}],
            },
        },
        {
            "type": "email_verification.requested",
            "properties": {"verify_url": "https://x/" + "v" * 2039},
        },
    ],
)
def test_invalid_events_fail_both(change: dict[str, Any]) -> None:
    """Events the decoder dead-letters are also rejected by the schema apps validate against."""
    event = {k: v for k, v in {**SPEC_EXAMPLE, **change}.items() if v is not None}
    assert not VALIDATOR.is_valid(event)
    with pytest.raises(InvalidEvent):
        decode_event(orjson.dumps(event))
