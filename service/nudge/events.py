"""Behaviour events: the typed form of what apps publish to `nudge.events` (SPEC §2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

USER_SIGNED_UP: Final = "user.signed_up"
USER_UPDATED: Final = "user.updated"
USER_LOGGED_IN: Final = "user.logged_in"
PRODUCT_VIEWED: Final = "product.viewed"
CART_ITEM_ADDED: Final = "cart.item_added"
CART_ITEM_REMOVED: Final = "cart.item_removed"
CHECKOUT_STARTED: Final = "checkout.started"
ORDER_COMPLETED: Final = "order.completed"
ORDER_SHIPPED: Final = "order.shipped"
PASSWORD_RESET_REQUESTED: Final = "password_reset.requested"  # noqa: S105 (an event name)
EMAIL_VERIFICATION_REQUESTED: Final = "email_verification.requested"
USER_UNSUBSCRIBED: Final = "user.unsubscribed"
USER_DELETED: Final = "user.deleted"
EMAIL_OPENED: Final = "email.opened"
EMAIL_CLICKED: Final = "email.clicked"

# Each known type with the properties it must carry and their JSON types. Extra properties are
# kept (apps evolve before Nudge does); a missing or mistyped required one is an invalid event.
REQUIRED_PROPERTIES: Final[Mapping[str, Mapping[str, tuple[type, ...]]]] = {
    USER_SIGNED_UP: {},
    USER_UPDATED: {},
    USER_LOGGED_IN: {},
    PRODUCT_VIEWED: {"product_id": (str,)},
    CART_ITEM_ADDED: {
        "product_id": (str,),
        "name": (str,),
        "price": (int, float),
        "quantity": (int,),
    },
    CART_ITEM_REMOVED: {"product_id": (str,)},
    CHECKOUT_STARTED: {},
    ORDER_COMPLETED: {
        "order_id": (str,),
        "total": (int, float),
        "currency": (str,),
        "items": (list,),
    },
    ORDER_SHIPPED: {
        "order_id": (str,),
        "carrier": (str,),
        "tracking_number": (str,),
        "tracking_url": (str,),
    },
    PASSWORD_RESET_REQUESTED: {"reset_url": (str,), "expires_at": (str,)},
    EMAIL_VERIFICATION_REQUESTED: {"verify_url": (str,)},
    USER_UNSUBSCRIBED: {"scope": (str,)},
    USER_DELETED: {},
    EMAIL_OPENED: {},
    EMAIL_CLICKED: {"command_id": (str,), "url": (str,)},
}
KNOWN_TYPES: Final = frozenset(REQUIRED_PROPERTIES)
# Properties naming a product or an order, wherever they appear (also `items[].product_id`): the
# state keeps them whole (cart, views, re-entry marks, a run's subject), so, like the event's own
# ids, a longer one than `codec.MAX_ID_LENGTH` makes the event invalid rather than being cut into
# another id.
ID_PROPERTIES: Final = ("product_id", "order_id")
# Links a mail carries: a cut link would not work, so a longer one makes the event invalid.
URL_PROPERTIES: Final = ("reset_url", "verify_url", "tracking_url", "url")
MAX_URL_LENGTH: Final = 2048
UNSUBSCRIBE_SCOPES: Final = frozenset({"marketing", "all"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """Profile fields an event carries; `None` means "not in this event", not "cleared"."""

    email: str | None = None
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    birthday: date | None = None
    marketing_consent: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One validated behaviour event. `occurred_at` is timezone-aware."""

    event_id: str
    type: str
    user_id: str
    occurred_at: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    user: Profile | None = None
