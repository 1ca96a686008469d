"""The published JSON Schema and the processor's decoder agree on what a valid event is."""

from __future__ import annotations

import copy
import json
import zoneinfo
from datetime import date
from importlib import resources
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import FormatChecker

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


# -- the decoder and the schema agree, case by case ---------------------------------------------
# docs/publishing.md tells apps to validate their events against the schema in their tests, so an
# event the schema passes must not be dead-lettered, and one it fails must not be accepted. Each
# case is checked with and without format assertion ("format": "date" on the birthday), from the
# JSON text an app would publish (json, not orjson, so out-of-range integers can be written).
FORMAT_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=FormatChecker())


def _variant(changes: dict[str, Any]) -> str:
    """SPEC §2's example with `changes` ("user.email": value; `...` deletes the field)."""
    event = copy.deepcopy(SPEC_EXAMPLE)
    for path, value in changes.items():
        *parents, name = path.split(".")
        target = event
        for parent in parents:
            target = target[parent]
        if value is ...:
            del target[name]
        else:
            target[name] = value
    return json.dumps(event, ensure_ascii=False)


def _nudge_accepts(text: str) -> bool:
    try:
        decode_event(text.encode())
    except InvalidEvent:
        return False
    return True


def _schema_accepts(text: str) -> bool:
    event = json.loads(text)
    plain, formats = VALIDATOR.is_valid(event), FORMAT_VALIDATOR.is_valid(event)
    assert plain == formats, "the schema must not depend on format assertion"
    return plain


def _at(value: object) -> dict[str, Any]:
    return {"occurred_at": value}


CART = "properties.quantity"
BOTH_ACCEPT: dict[str, dict[str, Any]] = {
    "the spec example": {},
    "Z": _at("2026-11-22T01:15:00Z"),
    "lower-case t and z (RFC 3339 §5.6 NOTE)": _at("2026-11-22t01:15:00z"),
    "a fraction": _at("2026-11-22T10:15:00.5+09:00"),
    "a fraction of 12 digits": _at("2026-11-22T10:15:00.123456789012+09:00"),
    "-00:00": _at("2026-11-22T01:15:00-00:00"),
    "offset +23:59": _at("2026-11-22T10:15:00+23:59"),
    "February 29 of a leap year": _at("2028-02-29T10:15:00+09:00"),
    "February 29 of 2000": _at("2000-02-29T10:15:00+09:00"),
    "the first accepted year": _at("1000-01-01T00:00:00+23:59"),
    "the last accepted year": _at("2999-12-31T23:59:59-23:59"),
    "user null": {"user": None},
    "properties null, unknown type": {"type": "wishlist.added", "properties": None},
    "email null": {"user.email": None},
    "name null": {"user.name": None},
    "locale null": {"user.locale": None},
    "timezone null": {"user.timezone": None},
    "birthday null": {"user.birthday": None},
    "marketing_consent null": {"user.marketing_consent": None},
    "timezone UTC": {"user.timezone": "UTC"},
    "timezone Etc/GMT+9": {"user.timezone": "Etc/GMT+9"},
    "timezone of three parts": {"user.timezone": "America/Argentina/Buenos_Aires"},
    "birthday February 29": {"user.birthday": "2000-02-29"},
    "birthday in year 1": {"user.birthday": "0001-01-01"},
    "birthday in year 400, a leap year": {"user.birthday": "0400-02-29"},
    "quantity 2.0 (JSON Schema's integer)": {CART: 2.0},
    "quantity 0": {CART: 0},
    "price -1": {"properties.price": -1},
    "locale en-US": {"user.locale": "en-US"},
    "an unknown user field": {"user.nickname": "hana"},
    "an unknown top-level field": {"source": "web"},
}
BOTH_REFUSE: dict[str, dict[str, Any]] = {
    "offset +0900": _at("2026-11-22T10:15:00+0900"),
    "a space between date and time": _at("2026-11-22 10:15:00+09:00"),
    "another separator": _at("2026-11-22X10:15:00+09:00"),
    "an ISO week date": _at("2026-W47-7T10:15:00+09:00"),
    "an ordinal date": _at("2026-326T10:15:00+09:00"),
    "ISO basic format": _at("20261122T101500+0900"),
    "month 13": _at("2026-13-45T10:15:00+09:00"),
    "hour 25": _at("2026-11-22T25:15:00+09:00"),
    "hour 24": _at("2026-11-22T24:00:00+09:00"),
    "minute 60": _at("2026-11-22T10:60:00+09:00"),
    "a leap second": _at("2016-12-31T23:59:60Z"),
    "no seconds": _at("2026-11-22T10:15+09:00"),
    "no offset": _at("2026-11-22T10:15:00"),
    "an offset with seconds": _at("2026-11-22T10:15:00+09:00:30"),
    "offset +24:00": _at("2026-11-22T10:15:00+24:00"),
    "offset +09:60": _at("2026-11-22T10:15:00+09:60"),
    "offset hours only": _at("2026-11-22T10:15:00+09"),
    "a comma before the fraction": _at("2026-11-22T10:15:00,5+09:00"),
    "a dot without digits": _at("2026-11-22T10:15:00.+09:00"),
    "February 30": _at("2026-02-30T10:15:00+09:00"),
    "February 29 of a common year": _at("2026-02-29T10:15:00+09:00"),
    "February 29 of 1900": _at("1900-02-29T10:15:00+09:00"),
    "April 31": _at("2026-04-31T10:15:00+09:00"),
    "day 00": _at("2026-11-00T10:15:00+09:00"),
    "year 999": _at("0999-12-31T23:59:59Z"),
    "year 3000": _at("3000-01-01T00:00:00Z"),
    "year 1, an hour ahead of UTC": _at("0001-01-01T00:00:00+01:00"),
    "year 9999": _at("9999-12-31T23:59:59Z"),
    "a final newline": _at("2026-11-22T10:15:00+09:00\n"),
    "full-width digits": _at("２０２６-11-22T10:15:00+09:00"),
    "Arabic-Indic digits": _at("٢٠٢٦-11-22T10:15:00+09:00"),
    "empty": _at(""),
    "a number": _at(1_795_000_000),
    "no occurred_at": _at(...),
    "user a list": {"user": []},
    "properties a list": {"properties": []},
    "timezone Asia/": {"user.timezone": "Asia/"},
    "timezone Asia//Tokyo": {"user.timezone": "Asia//Tokyo"},
    "timezone an absolute path": {"user.timezone": "/etc/localtime"},
    "timezone ../": {"user.timezone": "../zoneinfo/UTC"},
    "timezone zone.tab": {"user.timezone": "zone.tab"},
    "timezone empty": {"user.timezone": ""},
    "timezone with a space": {"user.timezone": "Asia/Tokyo "},
    "birthday February 30": {"user.birthday": "1990-02-30"},
    "birthday without dashes": {"user.birthday": "19900501"},
    "birthday as a week date": {"user.birthday": "1990-W18-2"},
    "birthday in year 0": {"user.birthday": "0000-01-01"},
    "birthday February 29 of a common year": {"user.birthday": "1990-02-29"},
    "birthday with a final newline": {"user.birthday": "1990-05-01\n"},
    "birthday 1990-5-1": {"user.birthday": "1990-5-1"},
    "email without @": {"user.email": "no-at-sign"},
    "email with a byte order mark": {"user.email": "hana\ufeff@example.jp"},
    "email with a final newline": {"user.email": "hana@example.jp\n"},
    "email of 255 characters": {"user.email": "h@" + "e" * 250 + ".jp"},
    "locale japanese": {"user.locale": "japanese"},
    "locale of 257 characters": {"user.locale": "ja" + "-abcd" * 51},
    "locale with a final newline": {"user.locale": "ja\n"},
    "name of 257 characters": {"user.name": "n" * 257},
    "name with a final newline": {"user.name": "Hana\n"},
    "marketing_consent 'true'": {"user.marketing_consent": "true"},
    "event_id with a final newline": {"event_id": "e-7f3a\n"},
    "event_id empty": {"event_id": ""},
    "event_id of 201 characters": {"event_id": "e" * 201},
    "user_id a number": {"user_id": 42},
    "type null": {"type": None},
    "price as a string": {"properties.price": "4800"},
    "price true": {"properties.price": True},
    "quantity 1.5": {CART: 1.5},
    "quantity true": {CART: True},
    "quantity 2**64 (beyond orjson's integers)": {CART: 2**64},
    "quantity 1e300": {CART: 1e300},
    "no name in cart.item_added": {"properties.name": ...},
    "properties null for cart.item_added": {"properties": None},
    "unsubscribe scope none": {"type": "user.unsubscribed", "properties": {"scope": "none"}},
    "order total a string": {
        "type": "order.completed",
        "properties": {"order_id": "o", "total": "1", "currency": "JPY", "items": []},
    },
    "order items not a list": {
        "type": "order.completed",
        "properties": {"order_id": "o", "total": 1, "currency": "JPY", "items": "x"},
    },
    "email.clicked without url": {"type": "email.clicked", "properties": {"command_id": "c"}},
}
# What JSON Schema cannot say; listed in the schema's description and in docs/publishing.md.
ONLY_NUDGE_REFUSES: dict[str, tuple[dict[str, Any], str]] = {
    "a zone not in the database": ({"user.timezone": "Mars/Olympus"}, "invalid_field"),
    "a folder of the database": ({"user.timezone": "Asia"}, "invalid_field"),
    "over 64 KiB": ({"properties.note": "x" * 70_000}, "too_large"),
}


@pytest.mark.parametrize("name", BOTH_ACCEPT)
def test_both_accept(name: str) -> None:
    """Valid variants of SPEC §2's example pass the schema and Nudge alike."""
    text = _variant(BOTH_ACCEPT[name])
    assert _schema_accepts(text)
    assert _nudge_accepts(text)


@pytest.mark.parametrize("name", BOTH_REFUSE)
def test_both_refuse(name: str) -> None:
    """Each invalid variant fails the schema and is dead-lettered by Nudge."""
    text = _variant(BOTH_REFUSE[name])
    assert not _schema_accepts(text)
    assert not _nudge_accepts(text)


@pytest.mark.parametrize("name", ONLY_NUDGE_REFUSES)
def test_what_the_schema_cannot_check_is_documented(name: str) -> None:
    """The only events the schema passes and Nudge refuses break a rule the schema lists."""
    changes, reason = ONLY_NUDGE_REFUSES[name]
    text = _variant(changes)
    assert _schema_accepts(text)
    with pytest.raises(InvalidEvent) as caught:
        decode_event(text.encode())
    assert caught.value.reason == reason
    for words in ("64 KiB", "IANA time zone database"):
        assert words in SCHEMA["description"]


# -- the same, over generated timestamps, dates and zone names ----------------------------------
def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}") | st.sampled_from(["0", "1", "123"])


TIMESTAMPS = st.builds(
    lambda *parts: "".join(parts),
    st.integers(0, 9999).map(lambda n: f"{n:04d}")
    | st.sampled_from(["1000", "1900", "2000", "2026", "2028", "2100", "2999", "3000"]),
    st.sampled_from(["-"]),
    _two(0, 13),
    st.sampled_from(["-"]),
    _two(0, 32),
    st.sampled_from(["T", "t", " ", "X", ""]),
    _two(0, 25),
    st.sampled_from([":"]),
    _two(0, 61),
    st.sampled_from([":", ""]),
    _two(0, 61),
    st.sampled_from(["", ".", ".5", ".123456", ".1234567890123", ",5"]),
    st.sampled_from(
        ["Z", "z", "", "+09:00", "-00:00", "+0900", "+23:59", "+24:00", "+09:60", "+09"]
    )
    | st.builds("{}{}:{}".format, st.sampled_from("+-"), _two(0, 25), _two(0, 61)),
)


@given(TIMESTAMPS | st.from_regex(SCHEMA["properties"]["occurred_at"]["pattern"], fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_any_occurred_at_is_accepted_by_both_or_neither(value: str) -> None:
    """Timestamps near and far from RFC 3339: the pattern and the decoder agree on every one."""
    text = _variant(_at(value))
    assert _schema_accepts(text) == _nudge_accepts(text)


@given(
    st.builds("{:04d}-{}-{}".format, st.integers(0, 9999), _two(0, 13), _two(0, 32))
    | st.dates().map(date.isoformat)
)
@settings(max_examples=200, deadline=None)
def test_any_birthday_is_accepted_by_both_or_neither(value: str) -> None:
    """The birthday pattern is the calendar: the decoder's date and the schema agree."""
    text = _variant({"user.birthday": value})
    assert _schema_accepts(text) == _nudge_accepts(text)


@given(
    st.sampled_from(sorted(zoneinfo.available_timezones()))
    | st.text(alphabet="AaZz09_+-/. ", max_size=12)
)
@settings(max_examples=200, deadline=None)
def test_a_zone_nudge_accepts_passes_the_schema(value: str) -> None:
    """Every name in the time zone database has the schema's shape; a name without it is refused
    by Nudge too (the schema cannot know the database, so only that direction holds)."""
    text = _variant({"user.timezone": value})
    if _nudge_accepts(text):
        assert _schema_accepts(text)
    if not _schema_accepts(text):
        assert not _nudge_accepts(text)
