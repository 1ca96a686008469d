"""What the engine remembers about one user, as frozen values (`statecodec.py` stores them).

Times are integer milliseconds since the Unix epoch (UTC): compact in storage and exact under
`NUDGE_DELAY_SCALE` (60 min × 0.001 = 3,600 ms). Collections are tuples with small, fixed bounds
so that an idle user's state stays well under 1 KiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# (product_id, name, price, quantity)
CartItem = tuple[str, str, float, int]
# (product_id, viewed_at_ms)
View = tuple[str, int]
# (mark, until_ms): re-entry memory, e.g. ("browse_abandonment:p-9", ...); FOREVER never expires
Mark = tuple[str, int]
FOREVER: Final = -1

MAX_CART_ITEMS: Final = 50
MAX_VIEWS: Final = 30
MAX_TOUCHES: Final = 3
EVENT_DIGEST_BYTES: Final = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """A journey in progress for this user: the next step to consider and when it is due.

    `trigger_id` anchors idempotency keys (the event that started the run, or the calendar
    occurrence, e.g. `birthday:2027-05-01`); `key` is the run's subject (a product, an order, a
    birthday); `data` holds the trigger's properties the step's template needs.
    """

    journey: str
    step: int
    due: int
    started: int
    trigger_id: str
    key: str = ""
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Touch:
    """A marketing mail sent (or withheld from a holdout user), remembered for attribution."""

    journey: str
    step: str
    variant: str | None
    at: int
    holdout: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class UserState:
    """Everything the engine knows about one user; `None` fields are not known yet."""

    user_id: str
    email: str | None = None
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    birthday: str | None = None
    consent: bool | None = None
    unsubscribed: str | None = None
    suppressed: tuple[str, ...] = ()
    signed_up: int | None = None
    last_active: int | None = None
    orders: int = 0
    cart: tuple[CartItem, ...] = ()
    views: tuple[View, ...] = ()
    marks: tuple[Mark, ...] = ()
    runs: tuple[Run, ...] = ()
    sent: tuple[int, ...] = ()
    touches: tuple[Touch, ...] = ()
    seen: bytes = b""
    seasonal_cursor: int = 0

    @property
    def marketing_allowed(self) -> bool:
        """Opt-in given and not withdrawn (SPEC §8: consent must be explicitly true)."""
        return self.consent is True and self.unsubscribed is None
