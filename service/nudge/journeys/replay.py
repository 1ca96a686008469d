"""The virtual clock of `nudge simulate`: events in time order, wake-ups fired in between.

Before each event at time t, every user's pending wake-up at or before t fires (earliest first,
ties by user id), then the event is applied with now = t; `finish(until)` fires the rest. The
per-user states live in a dict; a heap of (wake_at, user) with lazy invalidation orders the
wake-ups, which is what the processor's wake index does with the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nudge.events import Event
from nudge.journeys.engine import Engine, Result
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.outcome import Outcome
from nudge.journeys.state import UserState


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """One engine call during a replay: which user, at what virtual time, with what outcome."""

    user_id: str
    at: int
    outcome: Outcome


# Called once per engine call with (user id, virtual time in ms, result), in replay order.
Sink = Callable[[str, int, Result], None]


class Replay:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.states: dict[str, UserState] = {}
        self._wake: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self.clock: int | None = None

    def apply(self, event: Event) -> Iterator[Tick]:
        """Fire what is due up to the event's time, then apply the event at its own time."""
        ticks: list[Tick] = []
        self.feed(event, lambda user_id, at, result: ticks.append(_tick(user_id, at, result)))
        yield from ticks

    def advance(self, until: int) -> Iterator[Tick]:
        """Fire every wake-up at or before `until`, earliest first."""
        ticks: list[Tick] = []
        self.run_until(until, lambda user_id, at, result: ticks.append(_tick(user_id, at, result)))
        yield from ticks

    # `apply` and `advance` as callbacks with the engine's plain results: what `nudge simulate`
    # uses, so that a replay builds no Outcome and no datetime it does not write.
    def feed(self, event: Event, sink: Sink) -> None:
        """`apply`, passing each engine call's result to `sink`."""
        occurred = event.occurred_at
        at = to_ms(occurred)
        heap = self._heap
        if heap and heap[0][0] <= at:
            self.run_until(at, sink)
        elif self.clock is None or at > self.clock:
            self.clock = at
        user_id = event.user_id
        result = self.engine.decide(self.states.get(user_id), event, occurred, at)
        self._store(user_id, result)
        sink(user_id, at, result)

    def run_until(self, until: int, sink: Sink) -> None:
        """`advance`, passing each engine call's result to `sink`."""
        heap = self._heap
        wake = self._wake
        states = self.states
        fire_due = self.engine.fire_due
        while heap and heap[0][0] <= until:
            at, user_id = heapq.heappop(heap)
            if wake.get(user_id) != at:
                continue  # superseded by a later store for this user
            del wake[user_id]
            state = states.get(user_id)
            if state is None:
                continue
            result = fire_due(state, at)
            self._store(user_id, result)
            sink(user_id, at, result)
        if self.clock is None or until > self.clock:
            self.clock = until

    def _store(self, user_id: str, result: Result) -> None:
        state = result[0]
        if state is None:
            self.states.pop(user_id, None)
            self._wake.pop(user_id, None)
            return
        self.states[user_id] = state
        at = result[3]
        if at is None:
            self._wake.pop(user_id, None)
            return
        if self._wake.get(user_id) != at:
            self._wake[user_id] = at
            heapq.heappush(self._heap, (at, user_id))


def _tick(user_id: str, at: int, result: Result) -> Tick:
    state, commands, decisions, wake, policy = result
    outcome = Outcome(
        state=state,
        commands=commands,
        decisions=decisions,
        wake_at=None if wake is None else from_ms(wake),
        policy=policy,
    )
    return Tick(user_id=user_id, at=at, outcome=outcome)
