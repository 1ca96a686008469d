"""The engine's state codec for the processor, with the states it wrote or read lately kept decoded.

The processor loads a user's state before each event and stores it after; decoding the stored
bytes was about an eighth of the handler's work per event (`bench/bench_handler.py`). A state is
immutable and `decode_state(encode_state(s)) == s` (pinned by the engine's round-trip tests), so
the state that produced some bytes can stand in for decoding those bytes: keyed by the bytes'
whole content, an entry can never answer for other bytes, whichever worker wrote them or when.
"""

from __future__ import annotations

from typing import Any

# Users with an event in the last moments are the ones likely to have another (a session, a cart).
# About 13 MB: a synthetic user's state is ~2.6 KB decoded, ~0.6 KB encoded (docs/processor.md).
RECENT_STATES = 4096


class EngineCodec:
    """`encode_state` / `decode_state` of the engine module, as a `ports.StateCodec`."""

    def __init__(self, module: Any, recent: int = RECENT_STATES) -> None:
        self.module = module
        self.recent = recent
        # Two generations instead of evicting the oldest entry one by one: `next(iter(d))` on a
        # dict emptied from the front scans the deleted slots, and was 4 % of a worker's CPU.
        # When the young one is full it becomes the old one; the old one is dropped whole.
        self._young: dict[bytes, Any] = {}
        self._old: dict[bytes, Any] = {}

    def encode(self, state: Any) -> bytes:
        data: bytes = self.module.encode_state(state)
        self._keep(data, state)
        return data

    def decode(self, raw: bytes) -> Any:
        state = self._young.get(raw)
        if state is None:
            state = self._old.get(raw)
            if state is None:
                state = self.module.decode_state(raw)
            self._keep(raw, state)
        return state

    def _keep(self, raw: bytes, state: Any) -> None:
        if self.recent <= 0:
            return
        if len(self._young) >= (self.recent + 1) // 2:
            self._old = self._young
            self._young = {}
        self._young[raw] = state
