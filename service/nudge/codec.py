"""Wire formats: JSON (orjson) for events, send commands and delivery records.

Decoding is where untrusted bytes become typed data, so every check SPEC §2 asks for lives here and
fails with an `InvalidEvent` / `InvalidCommand` whose `reason` is a short, countable code and whose
message names the field. A field of the wrong JSON type (a list where a string belongs, say) is
such an error too, never a TypeError from the check itself (a list cannot be looked up in a set).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final, cast

import orjson

from nudge.commands import (
    DELIVERY_STATUSES,
    KINDS,
    DeliveryRecord,
    DeliveryStatus,
    Kind,
    SendCommand,
)
from nudge.errors import InvalidCommand, InvalidEvent
from nudge.events import (
    ID_PROPERTIES,
    MAX_URL_LENGTH,
    REQUIRED_PROPERTIES,
    UNSUBSCRIBE_SCOPES,
    URL_PROPERTIES,
    USER_UNSUBSCRIBED,
    Event,
    Profile,
)

MAX_EVENT_BYTES: Final = 64 * 1024
# event_id, type, user_id, and the product and order ids in properties (`events.ID_PROPERTIES`).
MAX_ID_LENGTH: Final = 200
# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: none of them belongs
# in a name or an address, and CR/LF in particular could forge a mail header downstream.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Deliberately loose: one @, no spaces or controls, a dot in the domain. The MTA is the real judge.
# U+FEFF is spelled out because JavaScript's \s counts it as a space and Python's does not: the
# schema's pattern (docs/publishing.md) means the same in both.
_EMAIL = re.compile(r"^[^@\s\ufeff]{1,64}@[^@\s\ufeff]+\.[^@\s\ufeff]+$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
# RFC 3339 §5.6 `date-time`: `T` and `Z` in either case (its §5.6 NOTE; ABNF is case-insensitive),
# seconds required, any number of fraction digits, offset hours 00–23 and minutes 00–59. No space
# separator: the NOTE only lets an application choose one, and the schema's validators (and SPEC
# §2's example) use `T`. Checked before `datetime.fromisoformat`, which also takes `+0900`, week
# dates and any separator; that then checks the calendar (month 13, February 30). Leap seconds
# (`:60`) are refused: `datetime` has none.
_LOCAL_DATE_TIME = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
)
_DATE_TIME = re.compile(_LOCAL_DATE_TIME + r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
# Only asked once a time failed `_DATE_TIME`, to say that the offset is what it lacks.
_DATE_TIME_WITHOUT_OFFSET = re.compile(_LOCAL_DATE_TIME)
# `_check_lengths` can only find a string over a bound in an event longer than the bound.
_SHORTEST_BOUND: Final = min(MAX_ID_LENGTH, MAX_URL_LENGTH)
# The journeys schedule days to a year ahead of an event and convert it to UTC: a year near 1 or
# 9999 overflowed `datetime` there and stopped `nudge simulate`. No real event is that far off.
EVENT_YEARS: Final = range(1000, 3000)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The shape of a tz database name (Asia/Tokyo, UTC, Etc/GMT+9, America/Argentina/Buenos_Aires),
# checked before the database is asked: the schema can check the shape, not the database.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
# JSON Schema's `integer` counts 1.0 as 1, so Nudge does too, within orjson's integers: -2**63
# to 2**64 - 1, the schema's minimum and maximum for `quantity`. The bounds are floats because
# the value is one: compiled, an int bound is rounded to a float first (2**64 - 1 to 2.0**64).
_LOWEST_INTEGER: Final = -(2.0**63)
_PAST_HIGHEST_INTEGER: Final = 2.0**64


def decode_event(raw: bytes | str | None) -> Event:
    """Parse and validate one behaviour event, or raise `InvalidEvent` saying what is wrong."""
    if raw is None:
        raise InvalidEvent("the record has no value (a tombstone?)", reason="empty")
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"the event is {len(raw)} bytes; at most {MAX_EVENT_BYTES} are accepted",
            reason="too_large",
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidEvent(_not_json(raw, err), reason="malformed_json") from err
    if not isinstance(data, dict):
        raise InvalidEvent(
            f"an event is a JSON object, got {type(data).__name__}", reason="not_an_object"
        )
    event_id = _required_id(data, "event_id")
    event_type = _required_id(data, "type")
    user_id = _required_id(data, "user_id")
    occurred_at = _timestamp(data, "occurred_at")
    properties = data.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise InvalidEvent("'properties' must be an object", reason="wrong_type")
    for name, types in REQUIRED_PROPERTIES.get(event_type, {}).items():
        value = properties.get(name)
        if value is None:
            raise InvalidEvent(
                f"a {event_type} event needs properties.{name}", reason="missing_property"
            )
        if (
            type(value) is float  # first: rare, and cheaper to ask than the tuple comparison
            and types == (int,)
            and value.is_integer()
            and _LOWEST_INTEGER <= value < _PAST_HIGHEST_INTEGER
        ):
            properties[name] = int(value)
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise InvalidEvent(
                f"properties.{name} must be {expected}, got {type(value).__name__}",
                reason="wrong_type",
            )
    if len(raw) > _SHORTEST_BOUND:
        _check_lengths(properties)
    if event_type == USER_UNSUBSCRIBED and properties["scope"] not in UNSUBSCRIBE_SCOPES:
        raise InvalidEvent(
            f"properties.scope={properties['scope']!r}: use 'marketing' or 'all'",
            reason="invalid_field",
        )
    user = data.get("user")
    if user is not None and not isinstance(user, dict):
        raise InvalidEvent("'user' must be an object", reason="wrong_type")
    profile = _profile(user) if user is not None else None
    return _new_event(event_id, event_type, user_id, occurred_at, properties, profile)


# A plain class with Event's slots: `_new_event` sets them with ordinary attribute stores and
# then makes the object an `Event` in place (allowed between classes with identical slots),
# because a frozen dataclass's `__init__` (`object.__setattr__` per field) was a fifth of
# decoding. The result is an ordinary frozen `Event`.
_EventBuilder = type("EventBuilder", (), {"__slots__": Event.__dict__["__slots__"]})


def _new_event(
    event_id: str,
    event_type: str,
    user_id: str,
    occurred_at: datetime,
    properties: Mapping[str, Any],
    user: Profile | None,
) -> Event:
    event = _EventBuilder()
    event.event_id = event_id
    event.type = event_type
    event.user_id = user_id
    event.occurred_at = occurred_at
    event.properties = properties
    event.user = user
    object.__setattr__(event, "__class__", Event)
    return cast(Event, event)


def encode_event(event: Event) -> bytes:
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "user_id": event.user_id,
        "occurred_at": event.occurred_at.isoformat(),
        "properties": dict(event.properties),
    }
    if event.user is not None:
        data["user"] = {k: v for k, v in _fields(event.user).items() if v is not None}
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


def encode_command(command: SendCommand) -> bytes:
    # Field by field in declaration order (tests/unit/test_codec.py pins it against
    # `fields(SendCommand)`): a command per mail, and the loop over `__slots__` was half of it.
    return orjson.dumps(
        {
            "command_id": command.command_id,
            "idempotency_key": command.idempotency_key,
            "user_id": command.user_id,
            "journey": command.journey,
            "step": command.step,
            "kind": command.kind,
            "template": command.template,
            "locale": command.locale,
            "to": command.to,
            "created_at": command.created_at,
            "channel": command.channel,
            "variables": command.variables,
            "variant": command.variant,
            "trigger_event_id": command.trigger_event_id,
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def decode_command(raw: bytes | str | None) -> SendCommand:
    data = _object(raw, InvalidCommand)
    try:
        kind = data["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise InvalidCommand(f"kind={kind!r}: expected transactional or marketing")
        variables = data.get("variables")
        if variables is None:
            variables = {}
        elif not isinstance(variables, dict):
            raise InvalidCommand(f"variables must be an object, got {type(variables).__name__}")
        return SendCommand(
            command_id=_str(data, "command_id", InvalidCommand),
            idempotency_key=_str(data, "idempotency_key", InvalidCommand),
            user_id=_str(data, "user_id", InvalidCommand),
            journey=_str(data, "journey", InvalidCommand),
            step=_str(data, "step", InvalidCommand),
            kind=cast(Kind, kind),
            channel=_str(data, "channel", InvalidCommand),
            template=_str(data, "template", InvalidCommand),
            locale=_str(data, "locale", InvalidCommand),
            to=_str(data, "to", InvalidCommand),
            variables=variables,
            variant=_optional_str(data, "variant"),
            created_at=_parse_time(data.get("created_at"), "created_at", InvalidCommand),
            trigger_event_id=_optional_str(data, "trigger_event_id"),
        )
    except KeyError as err:
        raise InvalidCommand(f"missing field {err.args[0]!r}") from err


def encode_delivery(record: DeliveryRecord) -> bytes:
    # Field by field in declaration order, as encode_command (tests/unit/test_codec.py pins the
    # keys against `fields(DeliveryRecord)`): one record per mail, 0.4 µs less than the loop.
    return orjson.dumps(
        {
            "command_id": record.command_id,
            "idempotency_key": record.idempotency_key,
            "user_id": record.user_id,
            "status": record.status,
            "attempt": record.attempt,
            "at": record.at,
            "smtp_code": record.smtp_code,
            "smtp_enhanced_code": record.smtp_enhanced_code,
            "message_id": record.message_id,
            "journey": record.journey,
            "step": record.step,
            "variant": record.variant,
            "kind": record.kind,
            "to": record.to,
            "reason": record.reason,
        }
    )


def decode_delivery(raw: bytes | str | None) -> DeliveryRecord:
    data = _object(raw, InvalidCommand)
    status = data.get("status")
    if not isinstance(status, str) or status not in DELIVERY_STATUSES:
        raise InvalidCommand(
            f"delivery status {status!r} is not one of {sorted(DELIVERY_STATUSES)}"
        )
    attempt = data.get("attempt")
    if attempt is None:
        attempt = 1
    elif not _is_int(attempt):
        raise InvalidCommand(f"field 'attempt' must be an integer, got {type(attempt).__name__}")
    smtp_code = data.get("smtp_code")
    if smtp_code is not None and not _is_int(smtp_code):
        raise InvalidCommand(
            f"field 'smtp_code' must be an integer or null, got {type(smtp_code).__name__}"
        )
    kind = _optional_str(data, "kind")
    return DeliveryRecord(
        command_id=_str(data, "command_id", InvalidCommand),
        idempotency_key=_str(data, "idempotency_key", InvalidCommand),
        user_id=_str(data, "user_id", InvalidCommand),
        status=cast(DeliveryStatus, status),
        attempt=attempt,
        at=_parse_time(data.get("at"), "at", InvalidCommand),
        smtp_code=smtp_code,
        smtp_enhanced_code=_optional_str(data, "smtp_enhanced_code"),
        message_id=_optional_str(data, "message_id"),
        journey=_optional_str(data, "journey"),
        step=_optional_str(data, "step"),
        variant=_optional_str(data, "variant"),
        kind=cast(Kind, kind) if kind in KINDS else None,  # unknown is only unknown, as before
        to=_optional_str(data, "to"),
        reason=_optional_str(data, "reason"),
    )


def is_clean_text(value: str) -> bool:
    """True when `value` holds no control character or line separator (safe near a header)."""
    return _CONTROL.search(value) is None


def is_valid_email(value: str) -> bool:
    return len(value) <= 254 and is_clean_text(value) and _EMAIL.match(value) is not None


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def _object(
    raw: bytes | str | None, error: type[InvalidEvent] | type[InvalidCommand]
) -> dict[str, Any]:
    if raw is None:
        raise error("the record has no value", reason="empty")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise error(_not_json(raw, err), reason="malformed_json") from err
    if not isinstance(data, dict):
        raise error("expected a JSON object", reason="not_an_object")
    return data


def _str(data: Mapping[str, Any], name: str, error: type[InvalidCommand]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise error(f"field {name!r} must be a non-empty string")
    return value


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    """A command's or delivery record's optional text field: a string, null or absent."""
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidCommand(f"field {name!r} must be a string or null, got {type(value).__name__}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a number


def _required_id(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    # The common case in one test (decode_event runs once per event on the processor's hot
    # path): printable ASCII has no control character, and two string methods cost less than
    # the regex; anything else takes the checks below, which say what is wrong.
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and value.isprintable()
    ):
        return value
    if name not in data or data[name] is None:
        raise InvalidEvent(f"required field '{name}' is missing", reason="missing_field")
    value = data[name]
    if not isinstance(value, str):
        raise InvalidEvent(
            f"'{name}' must be a string, got {type(value).__name__}", reason="wrong_type"
        )
    if not value or len(value) > MAX_ID_LENGTH or not is_clean_text(value):
        raise InvalidEvent(
            f"'{name}' must be 1–{MAX_ID_LENGTH} characters with no control characters",
            reason="invalid_field",
        )
    return value


def _check_lengths(properties: Mapping[str, Any]) -> None:
    """Product and order ids, and links, are kept and used whole: over their bound (ids
    `MAX_ID_LENGTH`, links `MAX_URL_LENGTH` characters) the event is invalid."""
    for name in ID_PROPERTIES:
        value = properties.get(name)
        if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            raise _too_long(f"properties.{name}", value, MAX_ID_LENGTH)
    items = properties.get("items")
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                value = item.get("product_id")
                if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
                    raise _too_long(f"properties.items[{index}].product_id", value, MAX_ID_LENGTH)
    for name in URL_PROPERTIES:
        value = properties.get(name)
        if isinstance(value, str) and len(value) > MAX_URL_LENGTH:
            raise _too_long(f"properties.{name}", value, MAX_URL_LENGTH)


def _too_long(field: str, value: str, limit: int) -> InvalidEvent:
    return InvalidEvent(
        f"{field} is {len(value):,} characters; at most {limit:,} are accepted",
        reason="invalid_field",
    )


def _timestamp(data: Mapping[str, Any], name: str) -> datetime:
    """An event's RFC 3339 time with an offset (SPEC §2), exactly as the schema's pattern has it."""
    if name not in data or data[name] is None:
        raise InvalidEvent(f"required field '{name}' is missing", reason="missing_field")
    value = data[name]
    if not isinstance(value, str):
        raise InvalidEvent(f"'{name}' must be an RFC 3339 string", reason="bad_timestamp")
    if _DATE_TIME.fullmatch(value) is None:
        if _DATE_TIME_WITHOUT_OFFSET.fullmatch(value) is not None:
            raise InvalidEvent(
                f"'{name}'={value!r} has no UTC offset; add one, e.g. +09:00 or Z",
                reason="bad_timestamp",
            )
        raise InvalidEvent(
            f"'{name}'={value!r} is not RFC 3339: use YYYY-MM-DDThh:mm:ss, an optional .fraction,"
            " then Z or ±hh:mm, e.g. 2026-11-22T10:15:00+09:00",
            reason="bad_timestamp",
        )
    try:
        parsed = datetime.fromisoformat(value.upper())  # 3.11 reads no lower-case z
    except ValueError as err:
        raise InvalidEvent(
            f"'{name}'={value!r} is not a date: {err}", reason="bad_timestamp"
        ) from err
    if parsed.year not in EVENT_YEARS:
        raise InvalidEvent(
            f"'{name}'={value!r}: Nudge takes the years {EVENT_YEARS.start}–{EVENT_YEARS.stop - 1}",
            reason="bad_timestamp",
        )
    return parsed


def _parse_time(
    value: Any, name: str, error: type[InvalidEvent] | type[InvalidCommand]
) -> datetime:
    """A time in Nudge's own records (commands, delivery records): Nudge wrote it with
    `isoformat`, so `fromisoformat` is the exact reader; apps' events take `_timestamp`."""
    if not isinstance(value, str):
        raise error(f"'{name}' must be an RFC 3339 string", reason="bad_timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise error(
            f"'{name}'={value!r} is not RFC 3339, e.g. 2026-11-22T10:15:00+09:00",
            reason="bad_timestamp",
        ) from err
    if parsed.tzinfo is None:
        raise error(
            f"'{name}'={value!r} has no UTC offset; add one, e.g. +09:00 or Z",
            reason="bad_timestamp",
        )
    return parsed


def _not_json(raw: bytes | str, err: orjson.JSONDecodeError) -> str:
    """Where the text stops being JSON, plainly. orjson's "invalid literal, expected 'true'" is
    a guess from the first letter (any line starting with t) and reads as if `true` were meant."""
    if not raw.strip():
        return "not JSON: the value is empty"
    detail = "unexpected text" if err.msg.startswith("invalid literal") else err.msg
    where = f"column {err.colno}" if err.lineno == 1 else f"line {err.lineno}, column {err.colno}"
    return f"not JSON: {detail} at {where}"


def _profile(user: Mapping[str, Any]) -> Profile:
    def text(name: str) -> str | None:
        value = user.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidEvent(f"user.{name} must be a string", reason="wrong_type")
        if not is_clean_text(value) or len(value) > 256:
            raise InvalidEvent(
                f"user.{name} holds a control character (CR/LF?) or is over 256 characters",
                reason="invalid_field",
            )
        return value

    email = text("email")
    if email is not None and not is_valid_email(email):
        raise InvalidEvent(f"user.email={email!r} is not an email address", reason="invalid_field")
    locale = text("locale")
    if locale is not None and not _LOCALE.match(locale):
        raise InvalidEvent(
            f"user.locale={locale!r} is not a locale like ja or en-US", reason="invalid_field"
        )
    timezone = text("timezone")
    if timezone is not None:
        _check_timezone(timezone)
    birthday_text = text("birthday")
    birthday = _birthday(birthday_text) if birthday_text is not None else None
    consent = user.get("marketing_consent")
    if consent is not None and not isinstance(consent, bool):
        raise InvalidEvent("user.marketing_consent must be true or false", reason="wrong_type")
    return Profile(
        email=email,
        name=text("name"),
        locale=locale,
        timezone=timezone,
        birthday=birthday,
        marketing_consent=consent,
    )


def _birthday(text: str) -> date:
    # The pattern first: `date.fromisoformat` alone also takes 19900501 and 1990-W18-2.
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidEvent(
        f"user.birthday={text!r} is not a date like 1990-05-01", reason="invalid_field"
    )


def _check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if _ZONE_NAME.fullmatch(name):
        try:
            ZoneInfo(name)
            return
        # OSError: a folder of the database (`Asia`) is no zone; reading it raises
        # IsADirectoryError.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidEvent(
        f"user.timezone={name!r} is not an IANA time zone like Asia/Tokyo",
        reason="invalid_field",
    )
