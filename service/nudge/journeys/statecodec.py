"""The stored form of `UserState`: a versioned, positional orjson array (compact, fast).

Positional rather than keyed because the state table holds one value per user and keys would
double its size; the leading version number lets a later layout read an older one. Layout 2
appended `consent_at` and `deleted_at`, layout 3 the times each profile field was last set; an
older layout reads with what it lacks unknown (None), which the engine treats as "no time known".
An idle user with a full profile, a pending win-back, birthday and anniversary, and a full
de-duplication memory encodes to about 600 bytes (docs/simulate.md has the measured figure); a
deleted user's tombstone to about 100.

The five profile times are one element: null when none is known, else `[newest, age, ...]`, the
newest time and, per field (email, name, locale, timezone, birthday), how much older its own time
is (null: unknown). A profile usually arrives in one event, so that is `[t, 0, 0, 0, 0, 0]`: about
30 bytes where five full times would take 70.
"""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

from nudge.errors import NudgeError
from nudge.journeys.draft import Draft
from nudge.journeys.state import NATIVE, Run, UserState, new_run, new_touch

VERSION: Final = 3
# Layout 1 is layout 2 without the trailing `consent_at`, `deleted_at`; layout 2 is layout 3
# without the trailing profile times.
_READS: Final = (1, 2, 3)
_BLANK: Final = UserState(user_id="")


class StateDecodeError(NudgeError, ValueError):
    """Stored state that this version cannot read (corrupt, or written by a newer Nudge)."""


def encode_state(state: UserState) -> bytes:
    return orjson.dumps(
        [
            VERSION,
            state.user_id,
            state.email,
            state.name,
            state.locale,
            state.timezone,
            state.birthday,
            state.consent,
            state.unsubscribed,
            state.suppressed,
            state.signed_up,
            state.last_active,
            state.orders,
            state.cart,
            state.views,
            state.marks,
            [_run(r) for r in state.runs],
            state.sent,
            [[t.journey, t.step, t.variant, t.at, int(t.holdout)] for t in state.touches],
            base64.b64encode(state.seen).decode("ascii"),
            state.seasonal_cursor,
            state.consent_at,
            state.deleted_at,
            _profile_times(state),
        ]
    )


def decode_state(raw: bytes) -> UserState:
    try:
        data = orjson.loads(raw)
        if not isinstance(data, list) or not data or data[0] not in _READS:
            version = data[0] if isinstance(data, list) and data else None
            raise StateDecodeError(
                f"stored user state has layout version {version!r}; this Nudge reads 1 to 3. "
                "Run the Nudge version that wrote it, or reset the processor's state."
            )
        if data[0] != VERSION:
            # Layout 1: no consent_at, deleted_at; layout 2: no profile times (a length
            # mismatch still fails below).
            data = [*data, None, None, None] if data[0] == 1 else [*data, None]
        (
            _,
            user_id,
            email,
            name,
            locale,
            timezone,
            birthday,
            consent,
            unsubscribed,
            suppressed,
            signed_up,
            last_active,
            orders,
            cart,
            views,
            marks,
            runs,
            sent,
            touches,
            seen,
            seasonal_cursor,
            consent_at,
            deleted_at,
            profile_times,
        ) = data
        # Built as a draft and frozen in place (see `draft.Draft.freeze`), with no comprehension
        # for an empty list (`!= []`, so that a corrupt null still fails as before): the
        # processor decodes a state per event, and the frozen constructor was most of it.
        # (Compiled, `Draft.__new__` would run `Draft.__init__`: a blank draft instead.)
        state = Draft(_BLANK) if NATIVE else Draft.__new__(Draft)
        state.user_id = user_id
        state.email = email
        state.name = name
        state.locale = locale
        state.timezone = timezone
        state.birthday = birthday
        state.consent = consent
        state.unsubscribed = unsubscribed
        state.consent_at = consent_at
        state.suppressed = tuple(suppressed)
        state.signed_up = signed_up
        state.last_active = last_active
        state.orders = orders
        state.cart = tuple([(p, n, pr, q) for p, n, pr, q in cart]) if cart != [] else ()
        state.views = tuple([(p, at) for p, at in views]) if views != [] else ()
        state.marks = tuple([(m, until) for m, until in marks]) if marks != [] else ()
        state.runs = (
            tuple([new_run(j, s, d, st, t, k, dt) for j, s, d, st, t, k, dt in runs])
            if runs != []
            else ()
        )
        state.sent = tuple(sent)
        state.touches = (
            tuple([new_touch(j, s, v, at, bool(h)) for j, s, v, at, h in touches])
            if touches != []
            else ()
        )
        state.seen = base64.b64decode(seen)
        state.seasonal_cursor = seasonal_cursor
        state.deleted_at = deleted_at
        if profile_times is None:
            state.email_at = state.name_at = state.locale_at = None
            state.timezone_at = state.birthday_at = None
        else:
            newest, email_age, name_age, locale_age, timezone_age, birthday_age = profile_times
            state.email_at = _time_of(newest, email_age)
            state.name_at = _time_of(newest, name_age)
            state.locale_at = _time_of(newest, locale_age)
            state.timezone_at = _time_of(newest, timezone_age)
            state.birthday_at = _time_of(newest, birthday_age)
        return state.freeze()
    except StateDecodeError:
        raise
    except (orjson.JSONDecodeError, ValueError, TypeError) as err:
        raise StateDecodeError(
            f"stored user state is unreadable ({err}); reset the processor's state for this "
            "user or restore the changelog"
        ) from err


def _profile_times(state: UserState) -> list[int | None] | None:
    """The profile fields' times as `[newest, age, ...]` (see the module docstring)."""
    # Spelled out field by field: the state is encoded once per event, and a loop over a tuple of
    # optional ints (compiled) cost more than the rest of this layout's encoding.
    email, name, locale = state.email_at, state.name_at, state.locale_at
    timezone, birthday = state.timezone_at, state.birthday_at
    newest = _later(_later(_later(_later(email, name), locale), timezone), birthday)
    if newest is None:
        return None
    return [
        newest,
        _age(newest, email),
        _age(newest, name),
        _age(newest, locale),
        _age(newest, timezone),
        _age(newest, birthday),
    ]


def _later(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None or a >= b:
        return a
    return b


def _age(newest: int, at: int | None) -> int | None:
    return None if at is None else newest - at


def _time_of(newest: int, age: int | None) -> int | None:
    return None if age is None else newest - age


def _run(run: Run) -> list[Any]:
    return [run.journey, run.step, run.due, run.started, run.trigger_id, run.key, run.data]
