"""browse_abandonment, first_purchase and post_purchase (SPEC §8)."""

from __future__ import annotations

from typing import Any

import pytest

from journeys.kit import HANA, SHIPPED, at, cart_add, ev, order, play
from nudge.events import Event
from nudge.journeys import Engine

T0 = at("2026-11-22 10:00")
LATER = at("2027-01-31 00:00")


def view(when: str, product: str = "p-7", **kw: Any) -> Event:
    return ev("product.viewed", at(when), product_id=product, **kw)


def test_the_third_view_of_a_product_within_24_hours_sends_an_offer_30_minutes_later() -> None:
    """Views at 10:00, 14:00 and 09:00 next day: offer at 09:30 for that product."""
    played = play(
        [view("2026-11-22 10:00", user=HANA), view("2026-11-22 14:00"), view("2026-11-23 09:00")],
        until=LATER,
    )
    assert played.mails("browse_abandonment") == [
        ("browse_abandonment", "offer", "2026-11-23 09:30")
    ]
    (command,) = [c for c in played.commands if c.journey == "browse_abandonment"]
    assert command.variables["product_id"] == "p-7"


@pytest.mark.parametrize(
    "views",
    [
        ["2026-11-22 10:00", "2026-11-22 11:00"],
        ["2026-11-22 10:00", "2026-11-22 11:00", "2026-11-23 10:30"],
    ],
    ids=["two views", "third view after 24 h"],
)
def test_fewer_than_three_views_within_24_hours_send_nothing(views: list[str]) -> None:
    """Two views, or three spread over more than 24 h, are not enough."""
    events = [view(views[0], user=HANA), *(view(v) for v in views[1:])]
    assert play(events, until=LATER).steps("browse_abandonment") == []


def test_views_of_different_products_do_not_add_up() -> None:
    """Three views of three products trigger nothing."""
    events = [view("2026-11-22 10:00", "a", user=HANA), view("2026-11-22 10:01", "b"),
              view("2026-11-22 10:02", "c")]  # fmt: skip
    assert play(events, until=LATER).steps("browse_abandonment") == []


def test_one_offer_per_product_per_30_days() -> None:
    """Viewing the product three more times within 30 days sends nothing new; after 30 days it
    does."""
    first = ["2026-11-22 10:00", "2026-11-22 10:05", "2026-11-22 10:10"]
    again = ["2026-12-01 10:00", "2026-12-01 10:05", "2026-12-01 10:10"]
    later = ["2026-12-23 10:00", "2026-12-23 10:05", "2026-12-23 10:10"]
    events = [view(first[0], user=HANA), *(view(v) for v in first[1:] + again + later)]
    played = play(events, until=LATER)
    assert [t for _, _, t in played.mails("browse_abandonment")] == [
        "2026-11-22 10:40",
        "2026-12-23 10:40",
    ]


@pytest.mark.parametrize(
    ("ending", "ends"),
    [
        (cart_add(at("2026-11-22 10:20"), product="p-7"), True),
        (cart_add(at("2026-11-22 10:20"), product="p-other"), False),
        (order(at("2026-11-22 10:20")), True),
    ],
    ids=["that product to cart", "another product to cart", "an order"],
)
def test_the_offer_ends_when_that_product_is_added_to_the_cart_or_on_an_order(
    ending: Event, ends: bool
) -> None:
    """Adding that product or ordering cancels the pending offer; another product does not."""
    events = [view("2026-11-22 10:00", user=HANA), view("2026-11-22 10:05"),
              view("2026-11-22 10:10"), ending]  # fmt: skip
    played = play(events, until=at("2026-11-22 12:00"))
    assert played.steps("browse_abandonment") == ([] if ends else ["offer"])


@pytest.mark.parametrize(("total", "percent"), [(9999, 5), (10000, 10), (25000, 10)])
def test_first_purchase_thanks_an_hour_later_with_a_coupon_by_order_total(
    total: int, percent: int
) -> None:
    """First order: thank_you +1 h with 5 % below 10,000 and 10 % from 10,000."""
    played = play([order(T0, total=total, user=HANA)], until=at("2026-11-22 12:00"))
    (command,) = [c for c in played.commands if c.journey == "first_purchase"]
    assert command.created_at == at("2026-11-22 11:00")
    assert command.variables["coupon_percent"] == percent
    assert command.variables["order_id"] == "o-1"
    assert str(command.variables["coupon_code"]).startswith("THANKS-")


def test_only_the_first_order_is_a_first_purchase() -> None:
    """A second order sends no second thank_you."""
    played = play(
        [order(T0, user=HANA), order(at("2026-11-25 10:00"), order_id="o-2")],
        until=at("2026-11-26 00:00"),
    )
    assert played.steps("first_purchase") == ["thank_you"]


def test_post_purchase_asks_for_a_review_after_4_days_and_cross_sells_after_21() -> None:
    """review_request +4 days, cross_sell +21 days after the order, with its items."""
    played = play([order(T0, user=HANA)], until=LATER)
    assert played.mails("post_purchase") == [
        ("post_purchase", "review_request", "2026-11-26 10:00"),
        ("post_purchase", "cross_sell", "2026-12-13 10:00"),
    ]
    cross_sell = next(c for c in played.commands if c.step == "cross_sell")
    assert cross_sell.variables["items"][0]["name"] == "Tea set"


def test_a_newer_order_replaces_the_post_purchase_sequence() -> None:
    """An order on day 2 restarts the sequence: the first order's mails never go."""
    played = play([order(T0, user=HANA), order(at("2026-11-24 10:00"), order_id="o-2")],
                  until=LATER)  # fmt: skip
    commands = [c for c in played.commands if c.journey == "post_purchase"]
    assert [(c.step, c.variables["order_id"]) for c in commands] == [
        ("review_request", "o-2"),
        ("cross_sell", "o-2"),
    ]


def test_an_order_withdraws_a_fresh_offer_and_adding_a_product_withdraws_its_offer() -> None:
    """An order ends browse_abandonment for every product, so an offer made within its grace is
    withdrawn from the sender. Adding a product to the cart (`same: product`) withdraws only
    that product's offer: the sender matches the command's `product_id`."""
    engine = Engine(SHIPPED)
    state = None
    for when in ("2026-11-22 10:00", "2026-11-22 10:05", "2026-11-22 10:10"):
        state = engine.on_event(state, view(when, user=HANA), at(when)).state
    assert state is not None
    due = engine.on_due(state, at("2026-11-22 10:40"))
    assert [c.step for c in due.commands] == ["offer"]
    assert due.state is not None
    when = at("2026-11-22 10:50")
    added = engine.on_event(due.state, cart_add(when, product="p-7"), when)
    assert added.policy is not None
    assert added.policy.withdrawn == ()
    assert added.policy.withdrawn_subjects == (("browse_abandonment", "product_id", "p-7"),)
    ordered = engine.on_event(due.state, order(when), when)
    assert ordered.policy is not None
    assert ordered.policy.withdrawn == ("browse_abandonment",)
    assert ordered.policy.withdrawn_subjects == ()


def test_another_products_offer_made_by_the_same_event_keeps_the_withdrawal() -> None:
    """The offer for p-7 went at 10:32; p-9's comes due at 10:42 and is made by the next event,
    the cart add of p-7 at 10:43. That new p-9 offer does not match the withdrawal of p-7's
    offer, which is still published."""
    engine = Engine(SHIPPED)
    state = None
    views = [("10:00", "p-7"), ("10:01", "p-7"), ("10:02", "p-7"),
             ("10:10", "p-9"), ("10:11", "p-9"), ("10:12", "p-9")]  # fmt: skip
    for i, (time_of_day, product) in enumerate(views):
        when = f"2026-11-22 {time_of_day}"
        profile = {"user": HANA} if i == 0 else {}
        state = engine.on_event(state, view(when, product, **profile), at(when)).state
    assert state is not None
    due = engine.on_due(state, at("2026-11-22 10:32"))
    assert [c.variables["product_id"] for c in due.commands] == ["p-7"]
    assert due.state is not None
    when = at("2026-11-22 10:43")
    added = engine.on_event(due.state, cart_add(when, product="p-7"), when)
    assert [c.variables["product_id"] for c in added.commands] == ["p-9"]
    assert added.policy is not None
    assert added.policy.withdrawn_subjects == (("browse_abandonment", "product_id", "p-7"),)
