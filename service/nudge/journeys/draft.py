"""A mutable working copy of `UserState` for the length of one engine call.

The engine changes many fields per event; copying into a draft and freezing once at the end
costs one object instead of one `dataclasses.replace` per change (the hot path of simulate),
and freezing turns the draft itself into the `UserState` instead of copying it again.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final, cast

from nudge.journeys.state import CartItem, Mark, Run, Touch, UserState, View

_NAMES: Final = tuple(f.name for f in fields(UserState))
# `freeze` relies on the same slots, in the same order, as UserState.
assert UserState.__slots__ == _NAMES  # noqa: S101 (once, at import; a mismatch fails the flip)
# Written out field by field: a loop of getattr/setattr cost a third of an event's time.


class Draft:
    __slots__ = _NAMES

    user_id: str
    email: str | None
    name: str | None
    locale: str | None
    timezone: str | None
    birthday: str | None
    consent: bool | None
    unsubscribed: str | None
    suppressed: tuple[str, ...]
    signed_up: int | None
    last_active: int | None
    orders: int
    cart: tuple[CartItem, ...]
    views: tuple[View, ...]
    marks: tuple[Mark, ...]
    runs: tuple[Run, ...]
    sent: tuple[int, ...]
    touches: tuple[Touch, ...]
    seen: bytes
    seasonal_cursor: int

    def __init__(self, state: UserState) -> None:
        self.user_id = state.user_id
        self.email = state.email
        self.name = state.name
        self.locale = state.locale
        self.timezone = state.timezone
        self.birthday = state.birthday
        self.consent = state.consent
        self.unsubscribed = state.unsubscribed
        self.suppressed = state.suppressed
        self.signed_up = state.signed_up
        self.last_active = state.last_active
        self.orders = state.orders
        self.cart = state.cart
        self.views = state.views
        self.marks = state.marks
        self.runs = state.runs
        self.sent = state.sent
        self.touches = state.touches
        self.seen = state.seen
        self.seasonal_cursor = state.seasonal_cursor

    def freeze(self) -> UserState:
        """This draft, turned into the `UserState` it describes; do not use the draft after.

        The two classes have the same slots, so the object can change class in place: no copy
        of twenty fields into a new frozen object (most of an engine call's fixed cost), and
        the result is an ordinary, frozen `UserState` (its own `__setattr__` refuses changes).
        """
        object.__setattr__(self, "__class__", UserState)
        return cast(UserState, self)

    @property
    def marketing_allowed(self) -> bool:
        return self.consent is True and self.unsubscribed is None
