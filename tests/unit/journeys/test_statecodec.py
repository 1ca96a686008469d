"""The stored form of a user's state: lossless, versioned and small."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from journeys.kit import HANA, SHIPPED, at, cart_add, ev, order
from nudge.journeys import Engine, StateDecodeError, UserState, decode_state, encode_state
from nudge.journeys.localtime import to_ms
from nudge.journeys.statecodec import VERSION

T0 = at("2026-11-22 10:00")


def _busy_state() -> UserState | None:
    engine = Engine(SHIPPED)
    profile = {**HANA, "birthday": "1990-05-01", "timezone": "Europe/Berlin", "locale": "de"}
    state = None
    for event in [
        ev("user.signed_up", T0, user=profile),
        cart_add(T0),
        ev("product.viewed", T0, product_id="p-3"),
        order(at("2026-11-22 12:00")),
        cart_add(at("2026-11-22 13:00"), product="p-2"),
    ]:
        state = engine.on_event(state, event, event.occurred_at).state
    return state


def test_encode_then_decode_gives_the_same_state() -> None:
    """Round trip of a state with profile, cart, runs, marks, touches and seen ids."""
    state = _busy_state()
    assert state is not None
    assert decode_state(encode_state(state)) == state


def test_an_idle_user_with_a_full_profile_needs_under_one_kibibyte() -> None:
    """A user with a full profile, a month of history and pending yearly runs stays < 1 KiB."""
    engine = Engine(SHIPPED)
    profile = {**HANA, "birthday": "1990-05-01", "timezone": "Asia/Tokyo", "locale": "ja"}
    state = None
    for index in range(40):
        event = ev("user.logged_in", at("2026-11-22 10:00"), event_id=f"evt-{index:08d}-abcdef",
                   user=profile if index == 0 else None)  # fmt: skip
        state = engine.on_event(state, event, event.occurred_at).state
    state = engine.on_event(state, ev("user.signed_up", T0), T0).state
    assert state is not None
    assert len(encode_state(state)) < 1024


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[4]", "layout version 4"),
        (b"{}", "layout version None"),
        (b"[1, 2]", "unreadable"),
        (b"[2, 2]", "unreadable"),
        (b"[3, 2]", "unreadable"),
    ],
)
def test_unreadable_state_says_what_to_do(raw: bytes, message: str) -> None:
    """A future layout or corrupt bytes raise StateDecodeError naming the problem."""
    with pytest.raises(StateDecodeError, match=message):
        decode_state(raw)


def test_a_state_stored_in_layout_1_still_reads() -> None:
    """Layout 1 (before `consent_at`, the time of the last consent change, `deleted_at` and the
    profile fields' times) reads as the same state with those unknown; the next consent change,
    whenever stamped, applies."""
    state = _busy_state()
    assert state is not None
    assert state.consent_at == to_ms(T0)
    _, *fields, _consent_at, _deleted_at, _profile_times = orjson.loads(encode_state(state))
    stored = orjson.dumps([1, *fields])
    old = decode_state(stored)
    assert old == replace(state, consent_at=None, deleted_at=None, **_NO_PROFILE_TIMES)
    out = Engine(SHIPPED).on_event(
        old, ev("user.unsubscribed", at("2026-11-01 10:00"), scope="marketing"), T0
    )
    assert out.state is not None
    assert not out.state.marketing_allowed


_NO_PROFILE_TIMES = dict.fromkeys(
    ("email_at", "name_at", "locale_at", "timezone_at", "birthday_at"), None
)


def test_a_state_stored_in_layout_2_reads_with_no_profile_times() -> None:
    """Layout 2 (before the profile fields' times) reads as the same state with those unknown, so
    the next event's profile fields apply, however they are stamped (as they did before)."""
    state = _busy_state()
    assert state is not None
    assert VERSION == 3
    _, *fields, _profile_times = orjson.loads(encode_state(state))
    old = decode_state(orjson.dumps([2, *fields]))
    assert old == replace(state, **_NO_PROFILE_TIMES)
    older = ev("user.updated", at("2026-11-01 10:00"), user={"email": "old@example.jp"})
    out = Engine(SHIPPED).on_event(old, older, at("2026-11-22 14:00"))
    assert out.state is not None
    assert (out.state.email, out.state.email_at) == ("old@example.jp", to_ms(older.occurred_at))


def test_the_profile_fields_times_are_stored_exactly_and_compactly() -> None:
    """Each profile field's time survives storage (known, unknown, older than another's), and a
    profile set by one event costs about 30 bytes of times, not five full ones."""
    state = _busy_state()
    assert state is not None
    signed = to_ms(T0)
    assert (state.email_at, state.birthday_at) == (signed, signed)
    single = orjson.loads(encode_state(state))[-1]
    assert single == [signed, 0, 0, 0, 0, 0]
    assert len(orjson.dumps(single)) < 32
    mixed = replace(state, name_at=None, locale_at=signed - 86_400_000, timezone_at=signed + 7)
    assert decode_state(encode_state(mixed)) == mixed
    assert orjson.loads(encode_state(mixed))[-1] == [signed + 7, 7, None, 86_400_007, 0, 7]
    bare = UserState(user_id="u-1")
    assert orjson.loads(encode_state(bare))[-1] is None
    assert decode_state(encode_state(bare)) == bare


def test_the_deletion_time_survives_storage_for_a_tombstone_and_for_a_returning_user() -> None:
    """Deleted at 10:10: the tombstone, and the user who signed up again at 10:20, read back
    with the deletion time (a straggler stamped before it is still recognised after a restart);
    only the former is a tombstone."""
    engine = Engine(SHIPPED)
    deletion = ev("user.deleted", at("2026-11-22 13:10"))
    deleted = engine.on_event(_busy_state(), deletion, deletion.occurred_at)
    back = engine.on_event(
        deleted.state,
        ev("user.signed_up", at("2026-11-22 13:20"), user=HANA),
        at("2026-11-22 13:20"),
    )
    for state, tombstone in ((deleted.state, True), (back.state, False)):
        assert state is not None
        stored = decode_state(encode_state(state))
        assert stored == state
        assert (stored.deleted_at, stored.tombstone) == (to_ms(at("2026-11-22 13:10")), tombstone)
