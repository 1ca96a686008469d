"""What the engine remembers about one user, as frozen values (`statecodec.py` stores them).

Times are integer milliseconds since the Unix epoch (UTC): compact in storage and exact under
`NUDGE_DELAY_SCALE` (60 min × 0.001 = 3,600 ms). Collections are tuples with small, fixed bounds
so that an idle user's state stays well under 1 KiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

# (product_id, name, price, quantity)
CartItem = tuple[str, str, float, int]
# (product_id, viewed_at_ms)
View = tuple[str, int]
# (mark, until_ms): re-entry memory, e.g. ("browse_abandonment:p-9", ...); FOREVER never expires
Mark = tuple[str, int]
FOREVER: Final = -1
T = TypeVar("T")

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


# Frozen dataclasses set every field through `object.__setattr__` in `__init__`, a large share
# of the engine's time on its hot path (a run per activity event, a decision per step fired). A
# builder is a plain class with the same slots: its fields are set with ordinary attribute stores,
# then the object becomes an instance of the frozen class in place (CPython allows `__class__`
# assignment between classes with identical slots). The result is an ordinary frozen instance;
# callers set every field, so nothing is left unset.
def builder(cls: type) -> Any:
    """A plain class with the slots of frozen dataclass `cls` (see above)."""
    return type(f"{cls.__name__}Builder", (), {"__slots__": cls.__dict__["__slots__"]})


def become(obj: Any, cls: type[T]) -> T:
    """`obj`, a `builder(cls)` instance with every field set, turned into a `cls`."""
    object.__setattr__(obj, "__class__", cls)
    return cast(T, obj)


_RunBuilder = builder(Run)
_TouchBuilder = builder(Touch)


def new_run(
    journey: str,
    step: int,
    due: int,
    started: int,
    trigger_id: str,
    key: str,
    data: Mapping[str, Any] | None,
) -> Run:
    """`Run(journey=..., ...)` with every field given, positionally and faster."""
    run = _RunBuilder()
    run.journey = journey
    run.step = step
    run.due = due
    run.started = started
    run.trigger_id = trigger_id
    run.key = key
    run.data = data
    return become(run, Run)


def new_touch(journey: str, step: str, variant: str | None, at: int, holdout: bool) -> Touch:
    """`Touch(journey=..., ...)` with every field given, positionally and faster."""
    touch = _TouchBuilder()
    touch.journey = journey
    touch.step = step
    touch.variant = variant
    touch.at = at
    touch.holdout = holdout
    return become(touch, Touch)
