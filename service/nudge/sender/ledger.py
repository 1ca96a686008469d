"""The idempotency ledger: which keys were handed to SMTP, and what became of them.

Durable as the compacted topic `<prefix>internal.sent-keys` (key: idempotency key, value: a
small JSON state), rebuilt into memory at start and tailed while running, so a key recorded by
any sender instance is known to every instance before it sends (see `tables.py`).

States: `sending` (acknowledged before the SMTP transaction starts), then `sent` (final: any
redelivery of the key is a `duplicate`), or `deferred`, `bounced`, `failed` — the server refused
the message, so nothing was delivered and a later attempt or an operator's replay is not a second
mail (a bounced address is stopped by the suppression list instead). A key still `sending`
when a sender starts is *ambiguous*: the process died between handing the message over and
recording the reply. Those are counted (`nudge_sender_ambiguous_keys`) and sent again when their
command is redelivered — at-least-once, see docs/sender.md — with the same Message-ID.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

import orjson

KeyState = Literal["sending", "sent", "deferred", "bounced", "failed"]
FINAL_STATES: Final = frozenset({"sent"})
LEDGER_TOPIC: Final = "sent-keys"  # under Topics.internal()
LEDGER_WINDOW: Final = timedelta(days=14)
# The ledger topic is compacted (latest state per key) *and* forgets keys older than the window.
LEDGER_TOPIC_CONFIG: Final = {
    "cleanup.policy": "compact,delete",
    "retention.ms": str(int(LEDGER_WINDOW.total_seconds() * 1000)),
}


def encode_entry(state: KeyState, *, command_id: str, at: datetime) -> bytes:
    return orjson.dumps({"state": state, "command_id": command_id, "at": at})


def decode_state(raw: bytes | None) -> KeyState | None:
    if raw is None:
        return None
    try:
        state = orjson.loads(raw).get("state")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if state in ("sending", "sent", "deferred", "bounced", "failed"):
        return state  # type: ignore[no-any-return]
    return None


@dataclass(slots=True)
class KeyLedger:
    """The in-memory view of the ledger topic (one instance per sender process).

    A key is remembered for `window` seconds from when this process first saw it (the topic
    itself deletes records older than the window too), so memory holds the keys of the last
    `window` rather than of all time. The window must outlast any redelivery: the retention of
    `send-commands` (Kafka's default: 7 days) and the longest retry schedule (about an hour).
    """

    window: float = LEDGER_WINDOW.total_seconds()
    clock: Callable[[], float] = time.time
    states: dict[str, KeyState] = field(default_factory=dict)
    _seen: deque[tuple[float, str]] = field(default_factory=deque)

    def apply(self, key: str, raw: bytes | None) -> None:
        """Fold one ledger record (or tombstone) into the view."""
        state = decode_state(raw)
        if state is None:
            self.states.pop(key, None)
            return
        self._fold(key, state)

    def _fold(self, key: str, state: KeyState) -> None:
        previous = self.states.get(key)
        if previous is None:
            now = self.clock()
            self._seen.append((now, key))
            self._evict(now)
        if previous not in FINAL_STATES or state in FINAL_STATES:
            # A late "sending" never hides a final outcome written by another attempt.
            self.states[key] = state

    def _evict(self, now: float) -> None:
        horizon = now - self.window
        while self._seen and self._seen[0][0] < horizon:
            _, old = self._seen.popleft()
            self.states.pop(old, None)

    def record(self, key: str, state: KeyState) -> None:
        """This process's own write, folded in at once (what `apply` makes of its record)."""
        self._fold(key, state)

    def state(self, key: str) -> KeyState | None:
        return self.states.get(key)

    def is_done(self, key: str) -> bool:
        return self.states.get(key) in FINAL_STATES

    def ambiguous(self) -> int:
        """Keys handed to SMTP whose reply was never recorded."""
        return sum(1 for state in self.states.values() if state == "sending")
