"""Invariants over random event logs (hypothesis): what must hold for every user, whatever
the order and timing of their events."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journeys.kit import SHIPPED, TOKYO, ev, play
from nudge.events import Event
from nudge.journeys import Engine
from nudge.journeys.localtime import in_quiet_hours, zone

START = datetime(2026, 11, 20, 8, 0, tzinfo=TOKYO)
END = START + timedelta(days=45)
ENGINE = Engine(SHIPPED)
PROFILE_ZONES = ["Asia/Tokyo", "America/New_York", "Europe/Berlin"]

ACTIONS = st.sampled_from(
    [
        "user.signed_up", "user.logged_in", "product.viewed", "product.viewed", "product.viewed",
        "cart.item_added", "cart.item_added", "cart.item_removed", "checkout.started",
        "order.completed", "order.shipped", "user.updated", "user.unsubscribed", "email.opened",
    ]
)  # fmt: skip
STEPS = st.tuples(
    ACTIONS,
    # minutes after the previous event: mostly bursts (busy days stress the cap), some long gaps
    st.one_of(st.integers(0, 90), st.integers(0, 90), st.integers(0, 36 * 60)),
    st.sampled_from(["p-1", "p-2", "p-3"]),
    st.sampled_from([None, True, False]),  # consent carried by this event, if any
)


def _events(
    user_id: str,
    steps: list[tuple[str, int, str, bool | None]],
    tz: str,
    seed: int,
    first_consent: bool | None = True,
) -> list[Event]:
    """The user's log; the first event introduces the profile, with `first_consent` (None: the
    profile never says, which SPEC §8's opt-in rule treats as no consent)."""
    when = START + timedelta(minutes=seed % 600)
    events = []
    for index, (action, gap, product, consent) in enumerate(steps):
        when += timedelta(minutes=gap)
        user: dict[str, Any] | None = None
        if index == 0:
            user = {"email": f"{user_id}@example.jp", "timezone": tz, "birthday": "1990-12-05"}
            if first_consent is not None:
                user["marketing_consent"] = first_consent
        if consent is not None:
            user = {**(user or {}), "marketing_consent": consent}
        props: dict[str, Any] = {}
        if action in ("product.viewed", "cart.item_removed"):
            props = {"product_id": product}
        elif action == "cart.item_added":
            props = {"product_id": product, "name": "x", "price": 1000, "quantity": 1}
        elif action in ("order.completed", "order.shipped"):
            props = {"order_id": f"o-{index}", "total": 3000, "currency": "JPY", "items": []}
            if action == "order.shipped":
                props = {"order_id": f"o-{index}", "carrier": "c", "tracking_number": "1",
                         "tracking_url": "https://t.example/1"}  # fmt: skip
        elif action == "user.unsubscribed":
            props = {"scope": "marketing"}
        events.append(
            ev(action, when, user_id=user_id, event_id=f"{user_id}-{index}", user=user, **props)
        )
    return events


# A busy shopper: the actions that start marketing journeys, minutes apart (stresses the cap).
BUSY_LOG = st.tuples(
    st.lists(
        st.tuples(
            st.sampled_from(["order.completed", "cart.item_added", "product.viewed",
                             "product.viewed", "user.signed_up", "user.logged_in"]),
            st.integers(0, 120),
            st.sampled_from(["p-1", "p-2"]),
            st.just(None),
        ),
        min_size=3,
        max_size=25,
    ),
    st.sampled_from(PROFILE_ZONES),
    st.integers(min_value=0, max_value=10_000),
    st.just(True),
)  # fmt: skip
# Consent at sign-up is mostly given, sometimes never stated (the opt-in rule's interesting case).
FIRST_CONSENT = st.sampled_from([True, True, None])
USER_LOG = st.tuples(
    st.lists(STEPS, min_size=1, max_size=25),
    st.sampled_from(PROFILE_ZONES),
    st.integers(min_value=0, max_value=10_000),
    FIRST_CONSENT,
)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.one_of(USER_LOG, BUSY_LOG))
def test_marketing_only_with_consent_outside_quiet_hours_and_at_most_two_a_day(
    log: tuple[list[Any], str, int, bool | None],
) -> None:
    """Every marketing mail goes to a user whose last word was consent, never between 21:00 and
    09:00 local, and no 24 h window holds more than 2 of them."""
    steps, tz, seed, first_consent = log
    events = _events("u-p", steps, tz, seed, first_consent)
    played = play(events, until=END, engine=ENGINE)
    marketing = [c for c in played.commands if c.kind == "marketing"]
    user_zone = zone(tz, "Asia/Tokyo")
    for command in marketing:
        ms = round(command.created_at.timestamp() * 1000)
        assert not in_quiet_hours(ms, SHIPPED.policies.quiet_start, SHIPPED.policies.quiet_end,
                                  user_zone)  # fmt: skip
        consent = None
        for event in events:
            if event.occurred_at >= command.created_at:
                break  # what is due at t fires before an event at t (the simulator's clock)
            if event.type == "user.unsubscribed":
                consent = False
            if event.user is not None and event.user.marketing_consent is not None:
                consent = event.user.marketing_consent
        assert consent is True, (command.journey, command.step)
    times = sorted(c.created_at for c in marketing)
    for first, third in zip(times, times[2:], strict=False):
        assert third - first >= timedelta(hours=24)


@FAST
@given(USER_LOG)
def test_no_cart_reminder_after_the_order_that_closed_the_cart(
    log: tuple[list[Any], str, int, bool | None],
) -> None:
    """A cart reminder is never created after an order unless the cart was filled again."""
    events = _events("u-c", *log)
    played = play(events, until=END, engine=ENGINE)
    for command in played.commands:
        if command.journey != "cart_abandonment":
            continue
        before = [e for e in events if e.occurred_at < command.created_at]
        last_order = max(
            (i for i, e in enumerate(before) if e.type == "order.completed"), default=-1
        )
        assert any(e.type == "cart.item_added" for e in before[last_order + 1 :])


@FAST
@given(USER_LOG, st.integers(min_value=0, max_value=24))
def test_nothing_at_all_after_deletion(
    log: tuple[list[Any], str, int, bool | None], cut: int
) -> None:
    """After user.deleted, pending steps never fire: no mail later than the deletion."""
    events = _events("u-d", *log)
    cut = min(cut, len(events) - 1)
    deleted_at = events[cut].occurred_at + timedelta(seconds=1)
    events = [*events[: cut + 1], ev("user.deleted", deleted_at, user_id="u-d")]
    played = play(events, until=END, engine=ENGINE)
    assert all(c.created_at <= deleted_at for c in played.commands)


@FAST
@given(st.lists(USER_LOG, min_size=2, max_size=4), st.randoms(use_true_random=False))
def test_interleaving_users_does_not_change_any_users_mails(
    logs: list[tuple[list[Any], str, int, bool | None]], rnd: random.Random
) -> None:
    """Events of different users, shuffled (each user's own order kept), give every user the
    same mails, with the same keys and times, as replaying that user alone."""
    per_user = [_events(f"u-{i}", *log) for i, log in enumerate(logs)]
    alone = {
        f"u-{i}": play(events, until=END, engine=ENGINE).commands
        for i, events in enumerate(per_user)
    }
    queues = [list(events) for events in per_user]
    mixed: list[Event] = []
    while any(queues):
        queue = rnd.choice([q for q in queues if q])
        mixed.append(queue.pop(0))
    mixed.sort(key=lambda e: e.occurred_at)  # the simulator reads in time order (stable sort)
    together = play(mixed, until=END, engine=ENGINE).commands
    for user_id, commands in alone.items():
        mine = [c for c in together if c.user_id == user_id]
        assert mine == commands


@FAST
@given(USER_LOG)
def test_replaying_the_same_log_gives_the_same_commands_and_keys(
    log: tuple[list[Any], str, int, bool | None],
) -> None:
    """Determinism: same events, same commands (ids, keys, times, variables)."""
    events = _events("u-r", *log)
    assert play(events, until=END, engine=ENGINE) == play(events, until=END, engine=ENGINE)


@FAST
@given(USER_LOG, st.integers(min_value=0, max_value=24))
def test_a_redelivered_event_changes_nothing(
    log: tuple[list[Any], str, int, bool | None], index: int
) -> None:
    """Delivering one event twice (at-least-once) yields exactly the mails of delivering it
    once."""
    events = _events("u-x", *log)
    index = min(index, len(events) - 1)
    doubled = [*events[: index + 1], events[index], *events[index + 1 :]]
    once = play(events, until=END, engine=ENGINE).commands
    twice = play(doubled, until=END, engine=ENGINE).commands
    assert once == twice


@FAST
@given(st.one_of(USER_LOG, BUSY_LOG))
def test_every_mail_has_its_own_idempotency_key_and_command_id(
    log: tuple[list[Any], str, int, bool | None],
) -> None:
    """The sender delivers one key at most once (SPEC §3), so two different mails (another
    step, another cart, another order) sharing a key would lose one of them: every command of a
    log has a key and a command id of its own."""
    played = play(_events("u-k", *log), until=END, engine=ENGINE)
    keys = [c.idempotency_key for c in played.commands]
    assert len(set(keys)) == len(keys), [(c.journey, c.step) for c in played.commands]
    assert len({c.command_id for c in played.commands}) == len(keys)
