"""A mutable working copy of `UserState` for the length of one engine call.

The engine changes many fields per event; copying into a draft and freezing once at the end
costs one object instead of one `dataclasses.replace` per change (the hot path of simulate).
Freezing copies the fields into a new `UserState` when mypyc compiled the engine (twenty-seven
native stores), and turns the draft itself into the `UserState` when it runs interpreted (see
`state.py` on how frozen values are built on the hot path).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Final, cast

from nudge.journeys.state import NATIVE, CartItem, Mark, Run, Touch, UserState, View

_NAMES: Final = tuple(f.name for f in fields(UserState))
# Interpreted, `freeze` relies on the same slots, in the same order, as UserState.
assert NATIVE or getattr(UserState, "__slots__", None) == _NAMES  # noqa: S101 (once, at import)
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
    consent_at: int | None
    email_at: int | None
    name_at: int | None
    locale_at: int | None
    timezone_at: int | None
    birthday_at: int | None
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
    deleted_at: int | None

    def __init__(self, state: UserState) -> None:
        self.user_id = state.user_id
        self.email = state.email
        self.name = state.name
        self.locale = state.locale
        self.timezone = state.timezone
        self.birthday = state.birthday
        self.consent = state.consent
        self.unsubscribed = state.unsubscribed
        self.consent_at = state.consent_at
        self.email_at = state.email_at
        self.name_at = state.name_at
        self.locale_at = state.locale_at
        self.timezone_at = state.timezone_at
        self.birthday_at = state.birthday_at
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
        self.deleted_at = state.deleted_at

    def freeze(self) -> UserState:
        """This draft, turned into the `UserState` it describes; do not use the draft after.

        The two classes have the same slots, so the object can change class in place: no copy
        of twenty-seven fields into a new frozen object (most of an engine call's fixed cost), and
        the result is an ordinary, frozen `UserState` (its own `__setattr__` refuses changes).
        Compiled, a copy instead (native classes cannot change class), at native speed.
        """
        if NATIVE:
            state = UserState.__new__(UserState)
            state.user_id = self.user_id  # type: ignore[misc]
            state.email = self.email  # type: ignore[misc]
            state.name = self.name  # type: ignore[misc]
            state.locale = self.locale  # type: ignore[misc]
            state.timezone = self.timezone  # type: ignore[misc]
            state.birthday = self.birthday  # type: ignore[misc]
            state.consent = self.consent  # type: ignore[misc]
            state.unsubscribed = self.unsubscribed  # type: ignore[misc]
            state.consent_at = self.consent_at  # type: ignore[misc]
            state.email_at = self.email_at  # type: ignore[misc]
            state.name_at = self.name_at  # type: ignore[misc]
            state.locale_at = self.locale_at  # type: ignore[misc]
            state.timezone_at = self.timezone_at  # type: ignore[misc]
            state.birthday_at = self.birthday_at  # type: ignore[misc]
            state.suppressed = self.suppressed  # type: ignore[misc]
            state.signed_up = self.signed_up  # type: ignore[misc]
            state.last_active = self.last_active  # type: ignore[misc]
            state.orders = self.orders  # type: ignore[misc]
            state.cart = self.cart  # type: ignore[misc]
            state.views = self.views  # type: ignore[misc]
            state.marks = self.marks  # type: ignore[misc]
            state.runs = self.runs  # type: ignore[misc]
            state.sent = self.sent  # type: ignore[misc]
            state.touches = self.touches  # type: ignore[misc]
            state.seen = self.seen  # type: ignore[misc]
            state.seasonal_cursor = self.seasonal_cursor  # type: ignore[misc]
            state.deleted_at = self.deleted_at  # type: ignore[misc]
            return state
        object.__setattr__(self, "__class__", UserState)
        return cast(UserState, self)

    @property
    def marketing_allowed(self) -> bool:
        return self.consent is True and self.unsubscribed is None
