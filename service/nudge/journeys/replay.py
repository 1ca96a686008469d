"""The virtual clock of `nudge simulate`: events in time order, wake-ups fired in between.

Before each event at time t, every user's pending wake-up at or before t fires (earliest first,
ties by user id), then the event is applied with now = t; `finish(until)` fires the rest. The
per-user states live in a dict; a heap of (wake_at, user) with lazy invalidation orders the
wake-ups, which is what the processor's wake index does with the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from nudge.events import Event
from nudge.journeys.engine import Engine
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.outcome import Outcome
from nudge.journeys.state import UserState


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """One engine call during a replay: which user, at what virtual time, with what outcome."""

    user_id: str
    at: int
    outcome: Outcome


class Replay:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.states: dict[str, UserState] = {}
        self._wake: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self.clock: int | None = None

    def apply(self, event: Event) -> Iterator[Tick]:
        """Fire what is due up to the event's time, then apply the event at its own time."""
        at = to_ms(event.occurred_at)
        if self._heap and self._heap[0][0] <= at:
            yield from self.advance(at)
        elif self.clock is None or at > self.clock:
            self.clock = at
        user_id = event.user_id
        outcome = self.engine.on_event(self.states.get(user_id), event, event.occurred_at)
        self._store(user_id, outcome)
        yield Tick(user_id=user_id, at=at, outcome=outcome)

    def advance(self, until: int) -> Iterator[Tick]:
        """Fire every wake-up at or before `until`, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            at, user_id = heapq.heappop(heap)
            if self._wake.get(user_id) != at:
                continue  # superseded by a later store for this user
            del self._wake[user_id]
            state = self.states.get(user_id)
            if state is None:
                continue
            outcome = self.engine.on_due(state, from_ms(at))
            self._store(user_id, outcome)
            yield Tick(user_id=user_id, at=at, outcome=outcome)
        if self.clock is None or until > self.clock:
            self.clock = until

    def _store(self, user_id: str, outcome: Outcome) -> None:
        if outcome.state is None:
            self.states.pop(user_id, None)
            self._wake.pop(user_id, None)
            return
        self.states[user_id] = outcome.state
        wake = outcome.wake_at
        if wake is None:
            self._wake.pop(user_id, None)
            return
        at = to_ms(wake)
        if self._wake.get(user_id) != at:
            self._wake[user_id] = at
            heapq.heappush(self._heap, (at, user_id))
