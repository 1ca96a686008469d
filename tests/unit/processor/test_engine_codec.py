"""The processor's state codec: states it wrote lately load without decoding, and identically."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

import orjson

from nudge import journeys
from nudge.codec import decode_event
from nudge.journeys import Engine, load_journeys
from nudge.journeys.synth import Plan, generate
from nudge.processor.engine_codec import EngineCodec
from nudge.processor.handler import HandlerConfig, RecordHandler
from nudge.processor.ports import Record
from nudge.processor.testing import FakeClock, MemoryStore, RecordingSink
from nudge.processor.timers import DueIndex, TickPlanner
from nudge.settings import SHIPPED_JOURNEYS
from nudge.topics import Topics


class CountingEngineModule:
    """The engine module's codec functions, counting the decodes."""

    def __init__(self) -> None:
        self.decoded = 0

    def encode_state(self, state: Any) -> bytes:
        data: bytes = journeys.encode_state(state)
        return data

    def decode_state(self, raw: bytes) -> Any:
        self.decoded += 1
        return journeys.decode_state(raw)


def test_a_state_just_stored_loads_without_decoding_and_equal_to_its_bytes() -> None:
    module = CountingEngineModule()
    codec = EngineCodec(module)
    state = _replayed_state()
    stored = codec.encode(state)
    assert codec.decode(bytes(stored)) is state  # equal bytes, not the same object: still known
    assert module.decoded == 0
    assert journeys.decode_state(stored) == state


def test_other_bytes_are_decoded_and_the_oldest_state_is_forgotten_past_the_bound() -> None:
    module = CountingEngineModule()
    codec = EngineCodec(module, recent=2)
    first, second, third = (codec.encode(s) for s in _replayed_states(3))
    assert module.decoded == 0
    codec.decode(third)
    codec.decode(second)
    assert module.decoded == 0
    assert codec.decode(first) == journeys.decode_state(first)  # pushed out by the third
    assert module.decoded == 1
    assert codec.decode(first) == journeys.decode_state(first)  # decoded once, then known
    assert module.decoded == 1
    assert codec.decode(third) == journeys.decode_state(third)


def test_the_handler_emits_and_stores_the_same_bytes_with_and_without_remembered_states() -> None:
    """A differential run over a synthetic month: the remembered states change nothing, whether
    every state is remembered or only a few (then most loads decode, some do not)."""
    log = generate(Plan(users=150, days=30, seed=3))
    decoded_always = _run(log, EngineCodec(journeys, recent=0))
    assert _run(log, EngineCodec(journeys)) == decoded_always
    assert _run(log, EngineCodec(journeys, recent=8)) == decoded_always
    outputs, _ = decoded_always
    assert len(outputs) > 100  # the month sent mail: the comparison covered real work


def _replayed_states(count: int) -> list[Any]:
    """The states of `count` users after a day of the synthetic shop (each a different state)."""
    engine = Engine(load_journeys(SHIPPED_JOURNEYS))
    states: dict[str, Any] = {}
    for line in generate(Plan(users=count * 4, days=3, seed=5)):
        event = decode_event(line)
        states[event.user_id] = engine.on_event(
            states.get(event.user_id), event, event.occurred_at
        ).state
    chosen = [state for state in states.values() if state is not None][:count]
    assert len(chosen) == count
    return chosen


def _replayed_state() -> Any:
    return _replayed_states(1)[0]


def _run(
    log: list[bytes], codec: EngineCodec
) -> tuple[list[tuple[str, bytes | None, bytes | None]], dict[bytes, bytes]]:
    """Every output record and the final table after the log, in batches of 50 with the clock at
    each batch's last event and a tick on both partitions after it (timers fire when due)."""
    topics = Topics("test.")
    sink, store = RecordingSink(), MemoryStore()
    clock = FakeClock(datetime.fromisoformat(orjson.loads(log[0])["occurred_at"]))
    handler = RecordHandler(
        config=HandlerConfig(topics=topics),
        engine=Engine(load_journeys(SHIPPED_JOURNEYS)),
        codec=codec,
        store=store,
        sink=sink,
        clock=clock,
        index=DueIndex(),
        planner=TickPlanner(resend_after=5.0),
        assigned=lambda: {0, 1},
    )
    offsets = itertools.count()

    def record(topic: str, partition: int, key: bytes | None, value: bytes) -> Record:
        return Record(topic=topic, partition=partition, offset=next(offsets), key=key, value=value)

    async def drive() -> None:
        for start in range(0, len(log), 50):
            batch = log[start : start + 50]
            events = []
            for line in batch:
                key = orjson.loads(line)["user_id"].encode()
                events.append(record(topics.events, sum(key) % 2, key, line))
            clock.current = datetime.fromisoformat(orjson.loads(batch[-1])["occurred_at"])
            await handler.handle_batch(events)
            await handler.handle_batch(
                [record(topics.internal("ticks"), partition, None, b"") for partition in (0, 1)]
            )

    asyncio.run(drive())
    outputs = [(out.topic, out.key, out.value) for out in sink.outputs]
    return outputs, dict(store.data)
