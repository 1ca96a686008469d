"""The engine's fast paths build exactly what the slow, obvious code would (docs/simulate.md)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from journeys.kit import HANA, SHIPPED, at, cart_add, ev, order, signup
from nudge.commands import SendCommand
from nudge.events import Event
from nudge.journeys import Decision, Engine, Run, Touch, UserState, decode_state, encode_state
from nudge.journeys.draft import Draft
from nudge.journeys.engine import Result
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.outcome import new_command, new_decision
from nudge.journeys.replay import Replay
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
