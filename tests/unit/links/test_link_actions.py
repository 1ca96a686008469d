"""The events a verified link produces: valid SPEC §2 events with deterministic ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import orjson
import pytest

import nudge
from nudge.codec import decode_event, encode_event
from nudge.links.actions import click_event, open_event, unsubscribe_event
from nudge.links.urls import MailRef

from .conftest import NOW

LATER = NOW + timedelta(hours=5)


def test_unsubscribe_is_a_marketing_unsubscribe_naming_the_mail(ref: MailRef) -> None:
    """user.unsubscribed carries scope marketing and the command, journey, step and variant."""
    event = unsubscribe_event(ref, now=NOW)
    assert event.type == "user.unsubscribed"
    assert event.user_id == "u-42"
    assert event.occurred_at == NOW
    assert dict(event.properties) == {
        "scope": "marketing",
        "command_id": "cmd-1",
        "journey": "cart_abandonment",
        "step": "reminder_1",
        "variant": "B",
    }


def test_click_names_the_command_and_the_url(ref: MailRef) -> None:
    """email.clicked carries the SPEC's {command_id, url}."""
    event = click_event(ref, "https://shop.example/p/9", now=NOW)
    assert event.type == "email.clicked"
    assert event.properties["command_id"] == "cmd-1"
    assert event.properties["url"] == "https://shop.example/p/9"


@pytest.mark.parametrize("make", ["unsubscribe", "open", "click"])
def test_every_link_event_decodes_as_a_valid_behaviour_event(ref: MailRef, make: str) -> None:
    """What the link service publishes passes the processor's own decoder unchanged."""
    event = {
        "unsubscribe": unsubscribe_event(ref, now=NOW),
        "open": open_event(ref, now=NOW),
        "click": click_event(ref, "https://shop.example/", now=NOW),
    }[make]
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize("make", ["unsubscribe", "open", "click"])
def test_every_link_event_matches_the_published_json_schema(ref: MailRef, make: str) -> None:
    """Apps and tools validating nudge.events with the shipped schema accept our events too
    (jsonschema is a dependency: a missing one fails here instead of skipping the check)."""
    schema = orjson.loads(
        (Path(nudge.__file__).parent / "schemas" / "event.schema.json").read_bytes()
    )
    event = {
        "unsubscribe": unsubscribe_event(ref, now=NOW),
        "open": open_event(ref, now=NOW),
        "click": click_event(ref, "https://shop.example/", now=NOW),
    }[make]
    jsonschema.validate(orjson.loads(encode_event(event)), schema)


def test_the_same_mail_and_action_always_give_the_same_event_id(ref: MailRef) -> None:
    """A double click, or the provider's POST plus the user's own, is one event downstream."""
    assert unsubscribe_event(ref, now=NOW).event_id == unsubscribe_event(ref, now=LATER).event_id
    assert open_event(ref, now=NOW).event_id == open_event(ref, now=LATER).event_id
    url = "https://shop.example/"
    assert click_event(ref, url, now=NOW).event_id == click_event(ref, url, now=LATER).event_id


def test_event_ids_differ_by_mail_action_and_destination(ref: MailRef) -> None:
    """Another mail, another action or another link is a new event, never mistaken for a repeat."""
    other_mail = replace(ref, command_id="cmd-2")
    ids = {
        unsubscribe_event(ref, now=NOW).event_id,
        unsubscribe_event(other_mail, now=NOW).event_id,
        open_event(ref, now=NOW).event_id,
        click_event(ref, "https://shop.example/a", now=NOW).event_id,
        click_event(ref, "https://shop.example/b", now=NOW).event_id,
    }
    assert len(ids) == 5


def test_occurred_at_is_utc_whatever_zone_the_clock_gives() -> None:
    """occurred_at is the request time in UTC, with an offset (RFC 3339)."""
    tokyo = datetime(2026, 11, 22, 10, 15, tzinfo=timezone(timedelta(hours=9)))
    event = open_event(replace(_ref(), variant=None), now=tokyo)
    assert event.occurred_at == tokyo
    assert event.occurred_at.tzinfo == UTC


def test_a_naive_time_is_refused() -> None:
    """The engine needs offsets; a naive clock is a programming error."""
    with pytest.raises(ValueError, match="timezone-aware"):
        open_event(_ref(), now=datetime(2026, 11, 22, 10, 15))


def _ref() -> MailRef:
    return MailRef(
        user_id="u-1",
        command_id="c-1",
        journey="winback",
        step="winback_1",
        variant=None,
        locale="en",
    )
