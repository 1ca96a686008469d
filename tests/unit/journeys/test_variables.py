"""Every template gets exactly the variables of the table in docs/dev/contracts.md (plus `name`)."""

from __future__ import annotations

from collections import defaultdict

from journeys.kit import SHIPPED
from nudge.codec import decode_event
from nudge.journeys import Engine
from nudge.journeys.replay import Replay
from nudge.journeys.synth import Plan, generate

CONTRACT: dict[str, set[str]] = {
    "order_confirmation": {"order_id", "total", "currency", "items"},
    "shipping_notice": {"order_id", "carrier", "tracking_number", "tracking_url"},
    "password_reset": {"reset_url", "expires_at"},
    "email_verification": {"verify_url"},
    "welcome": set(),
    "onboarding_guide": set(),
    "onboarding_tips": set(),
    "cart_reminder_1": {"items", "cart_total", "currency"},
    "cart_reminder_2": {"items", "cart_total", "currency", "discount_percent", "discount_code",
                        "discount_expires_at"},
    "browse_offer": {"product_id", "product_name"},
    "first_purchase_thank_you": {"order_id", "coupon_percent", "coupon_code", "coupon_expires_at"},
    "review_request": {"order_id", "items"},
    "cross_sell": {"order_id", "items"},
    "winback_1": {"discount_percent", "coupon_code", "coupon_expires_at"},
    "winback_2": set(),
    "birthday": set(),
    "anniversary": {"years"},
    "seasonal_pre_sale": {"campaign", "campaign_title", "starts_on", "ends_on"},
    "seasonal_launch": {"campaign", "campaign_title", "starts_on", "ends_on"},
    "seasonal_last_call": {"campaign", "campaign_title", "starts_on", "ends_on"},
}  # fmt: skip


def test_each_template_receives_the_contract_variables() -> None:
    """Over a synthetic year-long log every template appears with exactly its listed variables."""
    replay = Replay(Engine(SHIPPED))
    seen: dict[str, set[frozenset[str]]] = defaultdict(set)
    lines = generate(Plan(users=400, days=400, seed=3, events_per_user=20))
    for line in lines:
        for tick in replay.apply(decode_event(line)):
            for command in tick.outcome.commands:
                seen[command.template].add(frozenset(command.variables))
    assert set(seen) == set(CONTRACT)
    for template, variable_sets in seen.items():
        assert variable_sets == {frozenset(CONTRACT[template] | {"name"})}, template
