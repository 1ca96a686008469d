"""The fast paths' batch reader and raw decoding, against small stand-ins for Faust's objects."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import faust

from nudge.processor.fastpath import RawSchema, take_batches


@dataclass(eq=False)
class FakeMessage:
    topic: str
    offset: int
    generation_id: int = 1
    partition: int = 0
    tracked: bool = False
    acked: bool = False

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass(eq=False)
class FakeEvent:
    message: FakeMessage

    def ack(self) -> None:
        self.message.acked = True


@dataclass
class FakeFlow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class FakeApp:
    acking_topics: set[str]
    consumer_generation_id: int = 1
    flow_control: FakeFlow = field(default_factory=FakeFlow)
    unacked: set[FakeMessage] = field(default_factory=set)
    inbound: dict[Any, float] = field(default_factory=dict)

    @property
    def topics(self) -> Any:
        return self

    @property
    def consumer(self) -> Any:
        return self

    @property
    def monitor(self) -> Any:
        return self

    @property
    def stream_inbound_time(self) -> dict[Any, float]:
        return self.inbound


class FakeStream:
    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.queue: asyncio.Queue[FakeEvent] = asyncio.Queue()
        self.should_stop = False

    @property
    def channel(self) -> Any:
        return self

    async def maybe_start(self) -> None:
        return None

    def put(self, *messages: FakeMessage) -> list[FakeEvent]:
        events = [FakeEvent(m) for m in messages]
        for event in events:
            self.queue.put_nowait(event)
        return events


async def test_a_batch_holds_what_is_queued_up_to_the_maximum() -> None:
    """Queued records come out in order, at most `max_` per batch."""
    stream = FakeStream(FakeApp({"t"}))
    stream.put(*(FakeMessage("t", n) for n in range(5)))
    batches = take_batches(stream, 3, within=0.01)
    first = await anext(batches)
    second = await anext(batches)
    assert [e.message.offset for e in first] == [0, 1, 2]
    assert [e.message.offset for e in second] == [3, 4]


async def test_records_are_tracked_at_once_and_acked_only_when_the_next_batch_is_asked_for() -> (
    None
):
    """A batch is unacked while the agent handles it (a rebalance waits for it), acked after."""
    app = FakeApp({"t"})
    stream = FakeStream(app)
    messages = [FakeMessage("t", 0), FakeMessage("t", 1)]
    stream.put(*messages)
    batches = take_batches(stream, 10, within=0.01)
    await anext(batches)
    assert all(m.tracked and not m.acked for m in messages)
    assert app.unacked == set(messages)
    stream.put(FakeMessage("t", 2))
    await anext(batches)
    assert all(m.acked for m in messages)


async def test_a_batch_interrupted_by_a_shutdown_stays_unacked() -> None:
    """Closing the reader mid-batch (a crash or a stop) acks nothing: the batch is replayed."""
    stream = FakeStream(FakeApp({"t"}))
    (event,) = stream.put(FakeMessage("t", 0))
    batches = take_batches(stream, 10, within=0.01)
    await anext(batches)
    await batches.aclose()
    assert not event.message.acked


async def test_records_of_an_older_consumer_generation_or_a_suspended_flow_are_dropped() -> None:
    """As Faust's stream iterator: dropped untracked, never handed to the agent."""
    app = FakeApp({"t"}, consumer_generation_id=2)
    stream = FakeStream(app)
    old, new = FakeMessage("t", 0, generation_id=1), FakeMessage("t", 1, generation_id=2)
    stream.put(old, new)
    batches = take_batches(stream, 10, within=0.01)
    batch = await anext(batches)
    assert [e.message for e in batch] == [new]
    assert not old.tracked
    app.flow_control.active = False
    suspended = FakeMessage("t", 2, generation_id=2)
    stream.put(suspended, FakeMessage("t", 3, generation_id=2))
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    assert not suspended.tracked
    waiting.cancel()


async def test_a_partial_batch_is_handed_over_after_the_wait() -> None:
    """Fewer records than the maximum are handed over once `within` has passed."""
    stream = FakeStream(FakeApp({"t"}))
    stream.put(FakeMessage("t", 0))
    batch = await asyncio.wait_for(anext(take_batches(stream, 500, within=0.02)), 1.0)
    assert len(batch) == 1


async def test_raw_schema_hands_over_the_messages_own_key_and_value() -> None:
    """Raw bytes in, the same bytes (and None) out, as Faust's `raw` codec gives them."""
    app = faust.App("raw-schema-test", autodiscover=False)
    decode = RawSchema().compile(app)
    for key, value in ((b"u1", b"{}"), (None, None)):
        message = FakeMessage("t", 0)
        message.key, message.value, message.headers = key, value, []  # type: ignore[attr-defined]
        event = await decode(message)
        assert (event.key, event.value, event.message) == (key, value, message)
