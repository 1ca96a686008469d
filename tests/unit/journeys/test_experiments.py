"""A/B variants and holdout: stable assignment by hash of user and journey, holdout measured."""

from __future__ import annotations

from collections import Counter

from journeys.kit import HANA, at, cart_add, order, play
from nudge.journeys import Engine, parse_journeys
from nudge.journeys.ids import assign

CONFIG = parse_journeys(
    """
version: 1
journeys:
  cart_abandonment:
    kind: marketing
    trigger: {event: cart.item_added, when: cart_not_empty}
    reentry: debounce
    exit_on: [order.completed]
    holdout: 0.2
    variants:
      - {name: control, weight: 50}
      - name: discount
        weight: 50
        templates: {reminder_1: cart_reminder_2}
        params: {reminder_1: {discount_percent: 15}}
    steps:
      - {name: reminder_1, template: cart_reminder_1, wait: {delay: 60m}}
"""
)
JOURNEY = CONFIG.journey("cart_abandonment")
T0 = at("2026-11-22 10:00")


def test_assignment_is_stable_and_close_to_the_declared_shares() -> None:
    """The same user always gets the same arm; 10,000 users split about 20/40/40."""
    arms: Counter[str] = Counter()
    for index in range(10_000):
        user = f"u-{index}"
        first = assign(JOURNEY, user)
        assert assign(JOURNEY, user) == first
        arms["holdout" if first[1] else str(first[0])] += 1
    assert 1800 < arms["holdout"] < 2200
    assert 3800 < arms["control"] < 4200
    assert 3800 < arms["discount"] < 4200


def _user_in(arm: str) -> str:
    for index in range(1000):
        variant, holdout = assign(JOURNEY, f"u-{index}")
        if ("holdout" if holdout else variant) == arm:
            return f"u-{index}"
    raise AssertionError(arm)


def test_a_variant_can_change_the_template_and_its_parameters() -> None:
    """The `discount` arm sends cart_reminder_2 with 15 %; the command names its variant."""
    user = _user_in("discount")
    played = play([cart_add(T0, user=HANA, user_id=user)], until=at("2026-11-22 12:00"),
                  engine=Engine(CONFIG))  # fmt: skip
    (command,) = played.commands
    assert (command.variant, command.template) == ("discount", "cart_reminder_2")
    assert command.variables["discount_percent"] == 15


def test_a_holdout_user_receives_nothing_but_is_recorded_and_measured() -> None:
    """Holdout: a `holdout` decision instead of a mail, and the later order is counted as a
    holdout conversion."""
    user = _user_in("holdout")
    played = play(
        [cart_add(T0, user=HANA, user_id=user), order(at("2026-11-23 10:00"), user_id=user)],
        engine=Engine(CONFIG),
    )
    assert [c.journey for c in played.commands] == []
    assert ("reminder_1", "holdout") in played.reasons("cart_abandonment")
    (conversion,) = [d for d in played.decisions if d.outcome == "conversion"]
    assert (conversion.reason, conversion.holdout) == ("holdout_conversion", True)


def test_an_order_after_a_variant_mail_is_a_conversion_of_that_variant() -> None:
    """SPEC §8: the conversion names the journey, step and variant of the mail it converts."""
    user = _user_in("discount")
    played = play(
        [cart_add(T0, user=HANA, user_id=user), order(at("2026-11-23 10:00"), user_id=user)],
        engine=Engine(CONFIG),
    )
    (conversion,) = [d for d in played.decisions if d.outcome == "conversion"]
    assert (conversion.journey, conversion.step, conversion.variant) == (
        "cart_abandonment",
        "reminder_1",
        "discount",
    )
    assert (conversion.reason, conversion.holdout) == ("conversion", False)
