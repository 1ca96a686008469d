"""What the engine remembers about one user, as frozen values (`statecodec.py` stores them).

Times are integer milliseconds since the Unix epoch (UTC): compact in storage and exact under
`NUDGE_DELAY_SCALE` (60 min × 0.001 = 3,600 ms). Collections are tuples with small, fixed bounds
so that an idle user's state stays well under 1 KiB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

# (product_id, name, price, quantity; the price is `int | float`, not `float`: compiled code
# would turn 1800 into 1800.0)
CartItem = tuple[str, str, int | float, int]
# (product_id, viewed_at_ms)
View = tuple[str, int]
# (mark, until_ms): re-entry memory, e.g. ("browse_abandonment:p-9", ...); FOREVER never expires
Mark = tuple[str, int]
FOREVER: Final = -1
T = TypeVar("T")

# What one user's state can hold, whatever the events (docs/journeys.md, "Bounds"): identifiers
# (product and order ids) are at most 200 characters, the codec refuses longer ones
# (`nudge.codec.MAX_ID_LENGTH`); text kept from an event is cut on a character boundary; every
# collection keeps its most recent entries. So a state stays under half the processor's 512 KiB
# cap even when every character is one stored as six bytes (tests/unit/journeys/test_bounds.py).

# Enough for any real cart: a mail lists them all, and grocery carts reach dozens of lines.
MAX_CART_ITEMS: Final = 50
# Views within the repeat-view window (24 h): three of one product are what triggers.
MAX_VIEWS: Final = 30
MAX_TOUCHES: Final = 3
EVENT_DIGEST_BYTES: Final = 6
# A product name kept in the cart or for a mail (a subject line, a cart line): longer than any
# a mail shows in full, half the profile name's 256 (which the codec refuses beyond).
MAX_NAME_LENGTH: Final = 128
# Any other text a run keeps from its trigger (a carrier, a tracking number, a currency, a custom
# template's properties): as long as the longest link the codec accepts, so no link is cut.
MAX_TEXT_LENGTH: Final = 2048
# Pending runs of one journey; only `always` and `once_per` journeys can have more than one (a
# run per trigger, or per product). Beyond it the oldest is dropped (`too_many_runs`): with at
# most two marketing mails a day, eight browse offers pending at once are already six too many.
MAX_RUNS_PER_JOURNEY: Final = 8
# `once_per` memory of one journey (the products offered within the period, 30 days): beyond it
# the subject whose period ends first is forgotten early (it could be offered again before its
# 30 days are up). No user of a 2,000-user, 60-day generated log ever has more than 4.
MAX_MARKS_PER_JOURNEY: Final = 16


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
    # When consent or unsubscribe last changed (event time): a delayed, older change loses.
    consent_at: int | None = None
    # When each profile field was last set (event time of the newest event carrying it): a
    # delayed, older event's value for that field loses. None: not known (set, if at all, by a
    # state from before layout 3), so the next event's value applies.
    email_at: int | None = None
    name_at: int | None = None
    locale_at: int | None = None
    timezone_at: int | None = None
    birthday_at: int | None = None
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
    # When the user was last deleted (event time): an event stamped before it is the deleted
    # user's, delivered late, and is ignored. Alone, it is the tombstone (`tombstone`).
    deleted_at: int | None = None

    @property
    def marketing_allowed(self) -> bool:
        """Opt-in given and not withdrawn (SPEC §8: consent must be explicitly true)."""
        return self.consent is True and self.unsubscribed is None

    @property
    def tombstone(self) -> bool:
        """A deleted user's placeholder: the deletion time and nothing else.

        Every event the engine applies leaves its digest in `seen`, so a user who was deleted and
        came back (a later event) has one; the tombstone, written by the deletion, has none.
        """
        return self.deleted_at is not None and not self.seen


# Frozen dataclasses set every field through `object.__setattr__` in `__init__`, a large share
# of the engine's time on its hot path (a run per activity event, a decision per step fired).
# Compiled by mypyc (`make install`; docs/simulate.md) the classes are native, and the hot path
# builds them with `cls.__new__(cls)` and plain stores, which mypyc turns into direct writes (the
# `type: ignore`s: the fields are read-only for everyone else, and stay so at run time). The
# interpreted fallback calls the ordinary constructor. Classes mypyc never compiles but the hot
# path builds anyway (`SendCommand`, `Event`) use `builder`/`become` below. Every way gives an
# ordinary frozen instance, equal to the constructor's (tests/unit/journeys/test_fastpaths.py).
def is_native(cls: type) -> bool:
    """True when `cls` was compiled by mypyc: a native class has no `__slots__` to swap into."""
    return "__slots__" not in cls.__dict__


NATIVE: Final = is_native(UserState)


def builder(cls: type) -> Any:
    """A plain class with the slots of frozen (never compiled) dataclass `cls`: its fields are set
    with ordinary attribute stores, then `become` makes the object a `cls` in place (CPython
    allows `__class__` assignment between classes with identical slots)."""
    return type(f"{cls.__name__}Builder", (), {"__slots__": cls.__dict__["__slots__"]})


def become(obj: Any, cls: type[T]) -> T:
    """`obj`, a `builder(cls)` instance with every field set, turned into a `cls`."""
    object.__setattr__(obj, "__class__", cls)
    return cast(T, obj)


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
    if NATIVE:
        native = Run.__new__(Run)
        native.journey = journey  # type: ignore[misc]
        native.step = step  # type: ignore[misc]
        native.due = due  # type: ignore[misc]
        native.started = started  # type: ignore[misc]
        native.trigger_id = trigger_id  # type: ignore[misc]
        native.key = key  # type: ignore[misc]
        native.data = data  # type: ignore[misc]
        return native
    return Run(
        journey=journey,
        step=step,
        due=due,
        started=started,
        trigger_id=trigger_id,
        key=key,
        data=data,
    )


def new_touch(journey: str, step: str, variant: str | None, at: int, holdout: bool) -> Touch:
    """`Touch(journey=..., ...)` with every field given, positionally and faster."""
    if NATIVE:
        native = Touch.__new__(Touch)
        native.journey = journey  # type: ignore[misc]
        native.step = step  # type: ignore[misc]
        native.variant = variant  # type: ignore[misc]
        native.at = at  # type: ignore[misc]
        native.holdout = holdout  # type: ignore[misc]
        return native
    return Touch(journey=journey, step=step, variant=variant, at=at, holdout=holdout)
