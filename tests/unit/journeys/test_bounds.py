"""A user's stored state is bounded whatever valid events arrive (docs/journeys.md, "Bounds").

The processor refuses to store a state over 512 KiB (`handler.MAX_STATE_BYTES`) and dead-letters
every record that would grow it there; valid events must never get a user there. Identifiers
longer than 200 characters are refused by the codec (tests/unit/test_codec.py); here every other
string an event can carry is as long as the 64 KiB event limit allows, and every collection is
driven past its bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from journeys.kit import SHIPPED, at, ev
from nudge.codec import MAX_EVENT_BYTES, MAX_ID_LENGTH, encode_event
from nudge.commands import DeliveryRecord
from nudge.errors import InvalidEvent
from nudge.events import MAX_URL_LENGTH, Event
from nudge.journeys import Engine, UserState, decode_state, encode_state, parse_journeys
from nudge.journeys.state import (
    MAX_CART_ITEMS,
    MAX_MARKS_PER_JOURNEY,
    MAX_NAME_LENGTH,
    MAX_RUNS_PER_JOURNEY,
    MAX_TEXT_LENGTH,
    MAX_VIEWS,
)
from nudge.journeys.variables import MAX_CAPTURED_BYTES, MAX_ITEMS

# The stored form escapes a control character as \u0001: six bytes, the most any character
# costs (a four-byte UTF-8 character costs four). Free text is made of them below.
CTRL = "\x01"
# Half the processor's cap: what the worst case found here must stay under.
BOUND = 256 * 1024
T0 = at("2026-11-22 10:00")


def product_id(n: int) -> str:
    """A distinct product id of the longest accepted length, at six bytes per character."""
    return f"{n:06d}" + CTRL * (MAX_ID_LENGTH - 6)


def event_id(n: int) -> str:
    return f"{n:08d}".ljust(MAX_ID_LENGTH, "e")


def longest(build: Any) -> Event:
    """The event `build(length)` makes with the longest free text that keeps it valid (the
    codec refuses one over `MAX_EVENT_BYTES`): within a few bytes of that limit."""
    low, high = 0, MAX_EVENT_BYTES
    while low < high:
        middle = (low + high + 1) // 2
        try:
            build(middle)
        except InvalidEvent:
            high = middle - 1
        else:
            low = middle
    event = build(low)
    assert len(encode_event(event)) > MAX_EVENT_BYTES - 64
    return event


class Worst:
    """One user fed maximal events; the largest encoded state seen after each call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state: UserState | None = None
        self.largest = 0
        self.ids = iter(range(1_000_000))

    def feed(self, event: Event, now: datetime) -> None:
        outcome = self.engine.on_event(self.state, event, now)
        self._keep(outcome.state)

    def deliver(self, record: DeliveryRecord, now: datetime) -> None:
        self._keep(self.engine.on_delivery(self.state, record, now).state)

    def _keep(self, state: UserState | None) -> None:
        assert state is not None
        encoded = encode_state(state)
        assert decode_state(encoded) == state
        self.largest = max(self.largest, len(encoded))
        self.state = state

    def ev(self, type_: str, when: datetime, **kw: Any) -> Event:
        return ev(type_, when, event_id=event_id(next(self.ids)), **kw)


def _minutes(start: datetime, count: int, step: float = 1.0) -> Iterator[datetime]:
    for index in range(count):
        yield start + timedelta(minutes=index * step)


def test_the_shipped_journeys_keep_a_state_under_half_the_cap() -> None:
    """A first order of 20 items, a cart of 60 products, 40 products viewed three times (each a
    browse offer), six bounced addresses: every id as long as accepted, every name and text as
    long as the event allows, six bytes a character. The largest state on the way stays under
    256 KiB, half the processor's cap, with each collection at its bound."""
    worst = Worst(Engine(SHIPPED))
    profile = {
        "email": "a" * 64 + "@" + "b" * 186 + ".jp",
        "name": "𠮷" * 256,  # the codec's longest name, four bytes a character
        "locale": "en" + "-abcdefgh" * 28,
        "timezone": "America/Argentina/ComodRivadavia",
        "birthday": "1990-05-01",
        "marketing_consent": True,
    }
    assert len(profile["email"]) == 254
    worst.feed(worst.ev("user.signed_up", T0, user=profile), T0)
    when = T0 + timedelta(minutes=1)
    items = [
        {"product_id": product_id(n), "name": CTRL * 270, "price": 10**18, "quantity": 10**18}
        for n in range(MAX_ITEMS)
    ]
    worst.feed(
        longest(
            lambda n: worst.ev("order.completed", when, order_id=product_id(0), total=10**18,
                               currency=CTRL * n, items=items)
        ),
        when,
    )  # fmt: skip
    worst.feed(
        longest(
            lambda n: worst.ev("order.shipped", when, order_id=product_id(0), carrier=CTRL * n,
                               tracking_number=CTRL * 100, tracking_url="h" * MAX_URL_LENGTH)
        ),
        when,
    )  # fmt: skip
    for n, now in enumerate(_minutes(T0 + timedelta(minutes=2), MAX_CART_ITEMS + 10, 0.1)):
        worst.feed(
            longest(
                lambda length, n=n, now=now: worst.ev("cart.item_added", now,
                    product_id=product_id(1000 + n), name=CTRL * length, price=10**18,
                    quantity=10**18)
            ),
            now,
        )  # fmt: skip
    views = list(_minutes(T0 + timedelta(minutes=10), 120, 0.1))
    for n, now in enumerate(views):
        product = product_id(2000 + n // 3)
        worst.feed(
            longest(
                lambda length, now=now, product=product: worst.ev(
                    "product.viewed", now, product_id=product, name=CTRL * length
                )
            ),
            now,
        )
    for n, now in enumerate(_minutes(T0 + timedelta(minutes=30), 6)):
        address = f"{n}" * 64 + "@" + "b" * 186 + ".jp"
        worst.deliver(_bounce(address, now), now)
    worst.deliver(_bounce("x" * 300 + "@example.jp", views[-1]), views[-1])
    state = worst.state
    assert state is not None
    # the 50 products added last, ids whole
    assert [p for p, _, _, _ in state.cart] == [product_id(1010 + n) for n in range(MAX_CART_ITEMS)]
    assert {len(name) for _, name, _, _ in state.cart} == {MAX_NAME_LENGTH}
    assert len(state.views) == MAX_VIEWS
    assert len([m for m in state.marks if m[0].startswith("browse_abandonment:")]) == (
        MAX_MARKS_PER_JOURNEY
    )
    browse = [r for r in state.runs if r.journey == "browse_abandonment"]
    assert len(browse) == MAX_RUNS_PER_JOURNEY
    assert {len(r.data["name"]) for r in browse if r.data} == {MAX_NAME_LENGTH}
    assert {r.key for r in browse} == {product_id(2000 + n) for n in range(32, 40)}  # the newest
    (post,) = [r for r in state.runs if r.journey == "post_purchase"]
    assert post.data is not None
    assert [(i["product_id"], len(i["name"])) for i in post.data["items"]] == [
        (product_id(n), MAX_NAME_LENGTH) for n in range(MAX_ITEMS)
    ]
    (first,) = [r for r in state.runs if r.journey == "first_purchase"]
    assert first.data is not None
    assert 1000 < len(first.data["currency"]) <= MAX_TEXT_LENGTH  # what the 64 KiB left
    assert len(state.suppressed) == 4
    assert all(len(a) == 254 for a in state.suppressed)
    assert worst.largest < BOUND


CUSTOM = parse_journeys(
    """
version: 1
templates: [loyalty_note]
journeys:
  loyalty:
    kind: transactional
    trigger: {event: user.logged_in}
    steps:
      - {name: note, template: loyalty_note, wait: {delay: 1d}}
"""
)


def test_a_custom_template_keeps_a_bounded_share_of_each_trigger() -> None:
    """A template of the file's own keeps all its trigger's properties, so an `always` journey
    with a wait could pile up a 64 KiB event per login: it keeps the 8 newest runs (the oldest
    dropped as `too_many_runs`), each with at most 4 KiB of properties (text cut at 2,048
    characters), in their order while they fit: a property that does not fit is left out and the
    next one is tried."""
    worst = Worst(Engine(CUSTOM))
    dropped = []
    for n, now in enumerate(_minutes(T0, MAX_RUNS_PER_JOURNEY + 4)):
        profile = {"email": "hana@example.jp"} if n == 0 else None
        login = longest(
            lambda length, now=now, profile=profile: worst.ev(
                "user.logged_in", now, user=profile,
                short="kept", long="x" * length, wide=CTRL * 3000,
                    nested={"deep": [[1, 2], {"x": "y"}]},
            )
        )  # fmt: skip
        outcome = worst.engine.on_event(worst.state, login, now)
        dropped += [(d.reason, d.journey) for d in outcome.decisions]
        worst._keep(outcome.state)
    assert dropped == [("too_many_runs", "loyalty")] * 4
    state = worst.state
    assert state is not None
    assert len(state.runs) == MAX_RUNS_PER_JOURNEY
    assert [r.started for r in state.runs] == sorted(r.started for r in state.runs)
    data = state.runs[0].data
    assert data is not None
    assert (data["short"], data["long"], data["nested"]) == (
        "kept",
        "x" * MAX_TEXT_LENGTH,
        {"deep": [[1, 2], {"x": "y"}]},
    )
    assert "wide" not in data  # 2,048 characters of six bytes: over the budget by itself
    for run in state.runs:
        assert run.data is not None
        assert len(encode_state(UserState(user_id="u", runs=(run,)))) < 2 * MAX_CAPTURED_BYTES
    assert worst.largest < BOUND


def test_a_cart_of_ten_thousand_products_keeps_the_fifty_added_last() -> None:
    """Products keep coming and none is removed: the cart holds the 50 added last, the reminder
    lists those, and the state stops growing."""
    engine = Engine(SHIPPED)
    state = None
    sizes = []
    for n, now in enumerate(_minutes(T0, 10_000, 0.001)):
        add = ev("cart.item_added", now, event_id=f"e-{n:05d}", product_id=f"p-{n:05d}",
                 name=f"Item {n:05d}", price=100, quantity=1,
                 user={"email": "hana@example.jp", "marketing_consent": True})  # fmt: skip
        state = engine.on_event(state, add, now).state
        assert state is not None
        sizes.append(len(encode_state(state)))
    assert state is not None
    assert [p for p, _, _, _ in state.cart] == [f"p-{n:05d}" for n in range(9_950, 10_000)]
    assert max(sizes) == max(sizes[:100])
    due = engine.on_due(state, at("2026-11-22 12:00"))
    assert [len(c.variables["items"]) for c in due.commands] == [MAX_CART_ITEMS]


def test_a_product_name_is_kept_cut_on_a_character_boundary() -> None:
    """A 300-character product name of four-byte characters is kept as its first 256
    characters, whole ones (Python cuts between code points, never inside one)."""
    engine = Engine(SHIPPED)
    add = ev("cart.item_added", T0, product_id="p-1", name="𠮷" * 300, price=100, quantity=1)
    state = engine.on_event(None, add, T0).state
    assert state is not None
    assert state.cart[0][1] == "𠮷" * MAX_NAME_LENGTH
    assert decode_state(encode_state(state)) == state


def _bounce(address: str, when: datetime) -> DeliveryRecord:
    return DeliveryRecord(command_id="c", idempotency_key="k", user_id="u-1", status="bounced",
                          attempt=1, at=when, smtp_code=550, smtp_enhanced_code="5.1.1",
                          to=address)  # fmt: skip
