"""The engine's fast paths build exactly what the slow, obvious code would (docs/simulate.md)."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import fields
from datetime import UTC, datetime
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from journeys.kit import HANA, SHIPPED, at, cart_add, ev, order, signup
from nudge.codec import encode_command
from nudge.commands import SendCommand
from nudge.events import Event
from nudge.journeys import Decision, Engine, Run, Touch, UserState, decode_state, encode_state
from nudge.journeys.compiled import stale_modules
from nudge.journeys.draft import Draft
from nudge.journeys.engine import Result
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.outcome import new_command, new_decision
from nudge.journeys.replay import Replay
from nudge.journeys.simulate import _OCCURRED, _decision_json, _occurred
from nudge.journeys.state import new_run, new_touch

T0 = at("2026-11-22 10:00")


def _events() -> list[Event]:
    profile = {**HANA, "birthday": "1990-05-01", "timezone": "Europe/Berlin"}
    return [
        signup(T0, profile),
        ev("product.viewed", at("2026-11-22 10:01"), product_id="p-3"),
        ev("product.viewed", at("2026-11-22 10:02"), product_id="p-3"),
        ev("product.viewed", at("2026-11-22 10:03"), product_id="p-3"),
        cart_add(at("2026-11-22 10:05")),
        order(at("2026-11-23 12:00")),
        cart_add(at("2026-11-24 13:00"), product="p-2"),
        ev("user.logged_in", at("2026-12-20 08:00")),
    ]


def test_slot_setter_constructors_equal_the_dataclass_constructors() -> None:
    """new_run, new_touch, new_decision and new_command give objects equal to the plain ones."""
    assert new_run("j", 1, 2, 3, "t", "k", {"a": 1}) == Run(
        journey="j", step=1, due=2, started=3, trigger_id="t", key="k", data={"a": 1}
    )
    assert new_touch("j", "s", None, 5, True) == Touch(
        journey="j", step="s", variant=None, at=5, holdout=True
    )
    assert new_decision(
        "u", T0, "skipped", "exited", journey="j", step="s", event_id="e"
    ) == Decision(
        user_id="u", at=T0, outcome="skipped", reason="exited", journey="j", step="s", event_id="e"
    )
    values: dict[str, Any] = {f.name: f"v-{f.name}" for f in fields(SendCommand)}
    values.update(kind="marketing", created_at=T0, variables={"name": None}, variant=None)
    assert new_command(**values) == SendCommand(**values)


def test_a_frozen_draft_equals_the_state_it_was_drawn_from() -> None:
    """Draft(state).freeze() is an equal UserState, field by field."""
    state = UserState(user_id="u-1", email="a@example.jp", orders=2, seen=b"abcdef")
    frozen = Draft(state).freeze()
    assert type(frozen) is UserState
    assert frozen == state


def test_feed_gives_the_same_results_as_apply() -> None:
    """Replay.feed (what simulate uses) and Replay.apply (outcomes) decide the same things."""
    engine = Engine(SHIPPED)
    slow, fast = Replay(engine), Replay(engine)
    seen_slow: list[tuple[str, int, tuple[Decision, ...]]] = []
    seen_fast: list[tuple[str, int, tuple[Decision, ...]]] = []

    def sink(user_id: str, when: int, result: Result) -> None:
        seen_fast.append((user_id, when, result[2]))

    for event in _events():
        for tick in slow.apply(event):
            seen_slow.append((tick.user_id, tick.at, tick.outcome.decisions))
        fast.feed(event, sink)
    until = to_ms(at("2027-06-01 00:00"))
    for tick in slow.advance(until):
        seen_slow.append((tick.user_id, tick.at, tick.outcome.decisions))
    fast.run_until(until, sink)
    assert seen_fast == seen_slow
    assert len(seen_slow) > len(_events())  # wake-ups fired in between
    assert fast.states == slow.states


def test_on_event_wake_at_is_the_results_wake_up_in_utc() -> None:
    """on_event wraps decide: the same state, and the wake-up as a UTC datetime."""
    engine = Engine(SHIPPED)
    event = signup(T0)
    outcome = engine.on_event(None, event, T0)
    state, _, decisions, wake, policy = engine.decide(None, event, T0, to_ms(T0))
    assert (outcome.state, outcome.decisions, outcome.policy) == (state, decisions, policy)
    assert wake is not None
    assert outcome.wake_at == from_ms(wake)


def test_decoded_states_equal_the_states_of_a_replay() -> None:
    """decode_state(encode_state(s)) == s for every state a short replay leaves behind."""
    engine = Engine(SHIPPED)
    replay = Replay(engine)
    for event in _events():
        for _ in replay.apply(event):
            pass
    for _ in replay.advance(to_ms(at("2027-01-10 00:00"))):
        pass
    assert replay.states
    for state in replay.states.values():
        assert decode_state(encode_state(state)) == state


def _plain_decision_json(d: Decision) -> bytes:
    """What simulate wrote before its field-by-field version: every field, in order, but nulls."""
    values = {f.name: getattr(d, f.name) for f in fields(Decision)}
    return orjson.dumps({k: v for k, v in values.items() if v is not None and v is not False})


def test_decision_lines_equal_the_generic_field_filter() -> None:
    """simulate's spelled-out decision encoder writes what a loop over fields(Decision) would."""
    full = {f.name: f"v-{f.name}" for f in fields(Decision)}
    full.update(at=T0, until=T0, revenue=0.0, holdout=True, outcome="conversion", kind="marketing")
    decisions = [
        Decision(**full),  # type: ignore[arg-type]
        Decision(**{**full, "holdout": False, "revenue": None}),  # type: ignore[arg-type]
        new_decision("u", T0, "ignored", "duplicate_event", event_id="e"),
    ]
    replay = Replay(Engine(SHIPPED))
    for event in _events():
        for tick in replay.apply(event):
            decisions.extend(tick.outcome.decisions)
    for decision in decisions:
        assert _decision_json(decision) == _plain_decision_json(decision)


def test_command_json_has_every_field_in_declaration_order() -> None:
    """encode_command writes fields(SendCommand) in order, as the loop over the slots did."""
    values: dict[str, Any] = {f.name: f"v-{f.name}" for f in fields(SendCommand)}
    values.update(kind="marketing", created_at=T0, variables={"name": None, 1: "x"}, variant=None)
    command = SendCommand(**values)
    encoded = orjson.loads(encode_command(command))
    assert list(encoded) == [f.name for f in fields(SendCommand)]
    assert encoded["created_at"] == T0.isoformat()
    assert encoded["variables"] == {"name": None, "1": "x"}


@pytest.mark.parametrize(
    "line",
    [
        b'{"event_id":"e","occurred_at":"2026-11-22T10:00:00+09:00"}',
        b'{"occurred_at" : "2026-11-22T10:00:00Z","x":1}',
        b'{"properties":{"occurred_at":5},"occurred_at":"2026-11-22T10:00:00+09:00"}',
        b'{"properties":{"note":"\\"occurred_at\\""},"occurred_at":"2026-11-22T10:00:00Z"}',
        b'{"occurred_at":"short"}',
        b'{"event_id":"e"}',
        b"not json",
    ],
)
def test_the_time_order_pass_finds_what_the_regex_search_finds(line: bytes) -> None:
    """simulate's first pass looks for occurred_at where the key starts, as re.search would."""
    found, expected = _occurred(line), _OCCURRED.search(line)
    assert (found and found.group(1)) == (expected and expected.group(1))


def test_sources_edited_after_compiling_are_reported(tmp_path: Path) -> None:
    """compiled.stale_modules names a source newer than its extension, and only that one."""
    suffix = EXTENSION_SUFFIXES[0]
    for name, source_age, extension_age in [("fresh", 100, 50), ("edited", 10, 50)]:
        source, extension = tmp_path / f"{name}.py", tmp_path / f"{name}{suffix}"
        source.write_text("")
        extension.write_bytes(b"")
        now = time.time()
        os.utime(source, (now - source_age, now - source_age))
        os.utime(extension, (now - extension_age, now - extension_age))
    (tmp_path / "plain.py").write_text("")
    assert stale_modules(tmp_path) == [tmp_path / "edited.py"]


@pytest.mark.parametrize(
    "name",
    ["Asia/Tokyo", "America/New_York", "Europe/Berlin", "Europe/London", "Australia/Lord_Howe"],
)
def test_local_times_equal_the_utc_time_moved_into_the_zone(name: str) -> None:
    """from_ms(ms, zone) is the UTC time's astimezone(zone), fold and offset included: daily
    through two years, and every 5 minutes (and odd milliseconds) around each offset change."""
    zone = ZoneInfo(name)
    day = 86_400_000
    start = to_ms(datetime(2026, 1, 1, tzinfo=UTC))
    moments = list(range(start, start + 2 * 366 * day, day))
    for before, after in itertools.pairwise(moments[:]):
        if from_ms(before, zone).utcoffset() != from_ms(after, zone).utcoffset():
            for ms in range(before, after + day, 300_000):
                moments += [ms, ms + 1, ms - 999]
    assert len(moments) > 5_000 or name == "Asia/Tokyo"
    for ms in moments:
        expected = from_ms(ms).astimezone(zone)
        local = from_ms(ms, zone)
        assert (local, local.isoformat(), local.fold) == (
            expected,
            expected.isoformat(),
            expected.fold,
        )
