"""Facts an event establishes about a user: profile, cart, recent views, conversions.

Small pure helpers of the engine (`engine.py` decides *when* to call them): each takes the
current values and returns the new ones, or a `Decision` for an attributed order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from nudge.events import (
    CART_ITEM_ADDED,
    CART_ITEM_REMOVED,
    ORDER_COMPLETED,
    PRODUCT_VIEWED,
    USER_SIGNED_UP,
    USER_UNSUBSCRIBED,
    Event,
)
from nudge.journeys.draft import Draft
from nudge.journeys.outcome import Decision
from nudge.journeys.state import (
    FOREVER,
    MAX_CART_ITEMS,
    MAX_NAME_LENGTH,
    MAX_VIEWS,
    CartItem,
    Touch,
    View,
)

# Activity for "active in the last 90 days" (seasonal audience).
ACTIVITY: Final = frozenset(
    {
        USER_SIGNED_UP,
        "user.logged_in",
        PRODUCT_VIEWED,
        CART_ITEM_ADDED,
        CART_ITEM_REMOVED,
        "checkout.started",
        ORDER_COMPLETED,
    }
)


def merge_profile(draft: Draft, event: Event, occurred: int) -> None:
    """Profile fields accumulate: an event's `user` object carries the ones that changed.

    Each field is set by the newest event carrying it, by `occurred_at`: a value from an event
    older than the one that last set that field (an offline app's outbox delivered late) is
    ignored, while the same event's other fields, if nothing newer set them, still apply. At
    equal times the later arrival wins. Consent is the exception: a withdrawal always applies,
    however old, see `consent_applies`.
    """
    profile = event.user
    if profile is None:
        return
    if profile.email is not None and _newest(draft.email_at, occurred):
        draft.email = profile.email
        draft.email_at = occurred
    if profile.name is not None and _newest(draft.name_at, occurred):
        draft.name = profile.name
        draft.name_at = occurred
    if profile.locale is not None and _newest(draft.locale_at, occurred):
        draft.locale = profile.locale
        draft.locale_at = occurred
    if profile.timezone is not None and _newest(draft.timezone_at, occurred):
        draft.timezone = profile.timezone
        draft.timezone_at = occurred
    if profile.birthday is not None and _newest(draft.birthday_at, occurred):
        draft.birthday = profile.birthday.isoformat()
        draft.birthday_at = occurred
    if profile.marketing_consent is not None and consent_applies(
        draft, profile.marketing_consent, occurred
    ):
        draft.consent = profile.marketing_consent
        note_consent_change(draft, occurred)
        if profile.marketing_consent and event.type != USER_UNSUBSCRIBED:
            # A fresh opt-in after an unsubscribe subscribes again (profile fields that
            # changed, SPEC §2: an app sends consent only when the user gives it).
            draft.unsubscribed = None


def _newest(set_at: int | None, occurred: int) -> bool:
    """Whether a field last set at `set_at` (None: not known) takes a value stamped `occurred`."""
    return set_at is None or occurred >= set_at


def consent_applies(draft: Draft, granted: bool, occurred: int) -> bool:
    """Whether a consent change at `occurred` replaces the current consent state.

    A withdrawal (opt-out, unsubscribe) always does, however late it arrives: mail after an
    opt-out costs more trust than a missed one, and the user can opt in again. An opt-in does
    only if it is not older than the last change (one stamped 09:00 arriving after a 10:00
    unsubscribe must not subscribe again); at equal times the later arrival wins, as always.
    """
    return not granted or draft.consent_at is None or occurred >= draft.consent_at


def note_consent_change(draft: Draft, occurred: int) -> None:
    """Remember the latest consent change's time (a late withdrawal does not move it back)."""
    if draft.consent_at is None or occurred > draft.consent_at:
        draft.consent_at = occurred


def add_to_cart(cart: tuple[CartItem, ...], props: Mapping[str, Any]) -> tuple[CartItem, ...]:
    """The cart with this item added (or its quantity raised), its name cut at
    `MAX_NAME_LENGTH` characters; the most recent `MAX_CART_ITEMS` products are kept."""
    product = str(props.get("product_id"))
    quantity = props.get("quantity")
    quantity = quantity if isinstance(quantity, int) and quantity > 0 else 1
    price = props.get("price")
    price = price if isinstance(price, int | float) else 0
    name = str(props.get("name") or "")[:MAX_NAME_LENGTH]
    items = list(cart)
    for index, (p, _n, _price, q) in enumerate(items):
        if p == product:
            items[index] = (p, name, price, q + quantity)
            return tuple(items)
    items.append((product, name, price, quantity))
    return tuple(items[-MAX_CART_ITEMS:])


def record_view(
    views: tuple[View, ...], props: Mapping[str, Any], occurred: int, window: int
) -> tuple[View, ...]:
    """Views within the window, plus this one (bounded: only repeat views matter)."""
    kept = [v for v in views if v[1] > occurred - window]
    kept.append((str(props.get("product_id")), occurred))
    return tuple(kept[-MAX_VIEWS:])


def recent_touches(touches: tuple[Touch, ...], occurred: int, window: int) -> tuple[Touch, ...]:
    """The touches an order at `occurred` can be a conversion of: within the window before it."""
    return tuple(t for t in touches if occurred - window <= t.at <= occurred)


def attribute(
    user_id: str, touches: tuple[Touch, ...], event: Event, now: datetime, currency: str
) -> Decision | None:
    """Last touch wins: the order converts the latest of `touches` (see `recent_touches`)."""
    if not touches:
        return None
    touch = max(touches, key=lambda t: t.at)
    total = event.properties.get("total")
    return Decision(
        user_id=user_id,
        at=now,
        outcome="conversion",
        reason="holdout_conversion" if touch.holdout else "conversion",
        journey=touch.journey,
        step=touch.step,
        variant=touch.variant,
        event_id=event.event_id,
        revenue=float(total) if isinstance(total, int | float) else None,
        currency=str(event.properties.get("currency") or currency),
        holdout=touch.holdout,
    )


def expire(draft: Draft, now: int, view_window: int, attribution_window: int) -> None:
    """Forget what can no longer matter, so an idle user's state shrinks back (< 1 KiB)."""
    if draft.views and draft.views[0][1] <= now - view_window:
        draft.views = tuple(v for v in draft.views if v[1] > now - view_window)
    if draft.touches and draft.touches[0].at < now - attribution_window:
        draft.touches = tuple(t for t in draft.touches if t.at >= now - attribution_window)
    # A plain loop: this runs on every engine call, and most users' marks never expire.
    for _, until in draft.marks:
        if 0 <= until <= now:
            draft.marks = tuple(m for m in draft.marks if m[1] == FOREVER or m[1] > now)
            break
