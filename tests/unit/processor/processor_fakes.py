"""A tiny stand-in journey engine and a handler rig for the processor's unit tests.

`CartEngine` knows one marketing reminder (60 s after the last cart change, cancelled by an order)
and one transactional mail (order confirmation), enough to pin the shell's behaviour without the
real journeys; the real engine runs in the integration tests. Like the real engine it keeps what
the events say (cart lines with their names, quantities added up) and puts amounts in the mails,
so that valid input can make a state or a command that cannot be encoded or is too large.

`SizeCheckingProducer` and `FakeAdmin` stand in for Faust's producer and aiokafka's admin client
where the processor's record sizes and topic configuration are checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from nudge.admin import BROKER_MAX_MESSAGE_BYTES
from nudge.commands import DeliveryRecord, SendCommand
from nudge.events import Event
from nudge.policy import ContactPolicy
from nudge.processor.handler import HandlerConfig, RecordHandler
from nudge.processor.ports import Record
from nudge.processor.testing import FakeClock, MemoryStore, RecordingSink
from nudge.processor.timers import DueIndex, TickPlanner
from nudge.topics import Topics

PREFIX = "unit."
TOPICS = Topics(PREFIX)
REMINDER_DELAY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeOutcome:
    state: dict[str, Any] | None
    commands: tuple[SendCommand, ...] = ()
    decisions: tuple[Any, ...] = ()
    wake_at: datetime | None = None
    policy: ContactPolicy | None = None


def command(
    user_id: str,
    journey: str,
    step: str,
    now: datetime,
    trigger: str,
    variables: dict[str, Any] | None = None,
) -> SendCommand:
    key = f"{user_id}:{journey}:{step}:{trigger}"
    return SendCommand(
        command_id=f"c-{key}",
        idempotency_key=key,
        user_id=user_id,
        journey=journey,
        step=step,
        kind="transactional" if journey == "order_confirmation" else "marketing",
        template=journey,
        locale="ja",
        to="hana@example.jp",
        created_at=now,
        trigger_event_id=trigger,
        variables=variables or {},
    )


@dataclass
class CartEngine:
    """Cart reminder + order confirmation (an order after the reminder withdraws it, as the
    real engine's policy does); `fail_on` makes on_event raise for one event type (`"due"`:
    on_due raises)."""

    fail_on: str | None = None
    deliveries: list[DeliveryRecord] = field(default_factory=list)

    def on_event(self, state: Any, event: Event, now: datetime) -> FakeOutcome:
        if event.type == self.fail_on:
            raise RuntimeError("engine bug")
        current: dict[str, Any] = state or {"user_id": event.user_id, "seen": []}
        if event.event_id in current["seen"]:
            return FakeOutcome(state=current, wake_at=_wake(current))
        current = {**current, "seen": [*current["seen"], event.event_id]}
        if event.type == "user.deleted":
            return FakeOutcome(state=None)
        if event.type == "cart.item_added":
            current["due"] = (now + REMINDER_DELAY).isoformat()
            current["trigger"] = event.event_id
            props = event.properties
            if "product_id" in props:  # a cart line: quantities of one product add up
                cart = dict(current.get("cart", {}))
                line = cart.get(props["product_id"], {"quantity": 0})
                cart[props["product_id"]] = {
                    "name": props.get("name", ""),
                    "price": props.get("price", 0),
                    "quantity": line["quantity"] + props.get("quantity", 1),
                }
                current["cart"] = cart
            return FakeOutcome(state=current, wake_at=_wake(current))
        if event.type == "order.completed":
            current.pop("due", None)
            amounts = {"total": event.properties.get("total", 0), "cart_total": _total(current)}
            current.pop("cart", None)
            sent = command(
                event.user_id, "order_confirmation", "confirmation", now, event.event_id, amounts
            )
            withdrawn = None
            if current.pop("reminded", False):  # the reminder may still wait in the sender
                withdrawn = ContactPolicy(
                    user_id=event.user_id,
                    marketing_allowed=True,
                    deleted=False,
                    at=now,
                    withdrawn=("cart_abandonment",),
                )
            return FakeOutcome(state=current, commands=(sent,), policy=withdrawn)
        if event.type == "user.unsubscribed":
            policy = ContactPolicy(
                user_id=event.user_id, marketing_allowed=False, deleted=False, at=now
            )
            return FakeOutcome(state=current, wake_at=_wake(current), policy=policy)
        return FakeOutcome(state=current, wake_at=_wake(current))

    def on_due(self, state: Any, now: datetime) -> FakeOutcome:
        if self.fail_on == "due":
            raise RuntimeError("engine bug on a timer")
        current = dict(state)
        trigger = current.pop("due", None) and current["trigger"]
        total = {"cart_total": _total(current)}
        sent = command(current["user_id"], "cart_abandonment", "reminder_1", now, trigger, total)
        current["reminded"] = True
        return FakeOutcome(state=current, commands=(sent,))

    def on_delivery(self, state: Any, record: DeliveryRecord, now: datetime) -> FakeOutcome:
        self.deliveries.append(record)
        current = dict(state or {"user_id": record.user_id, "seen": []})
        current["bounced"] = record.status == "bounced"
        current["attempts"] = current.get("attempts", 0) + record.attempt
        return FakeOutcome(state=current, wake_at=_wake(current))


def _total(state: dict[str, Any]) -> int:
    return sum(line["price"] * line["quantity"] for line in state.get("cart", {}).values())


def _wake(state: dict[str, Any]) -> datetime | None:
    due = state.get("due")
    return datetime.fromisoformat(due) if due else None


class JsonCodec:
    def encode(self, state: Any) -> bytes:
        return orjson.dumps(state)

    def decode(self, raw: bytes) -> Any:
        return orjson.loads(raw)


@dataclass
class SizeCheckingProducer:
    """Faust's producer as `DirectSink` calls it, refusing what aiokafka and the broker refuse:
    a record whose batch would exceed `max_request_size` (aiokafka's check in `send`), or its
    topic's `max.message.bytes` (`topic_limits`; others: the broker's default)."""

    max_request_size: int
    topic_limits: dict[str, int] = field(default_factory=dict)
    sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> asyncio.Future[None]:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"{size} bytes, over max_request_size")
        if size > self.topic_limits.get(topic, BROKER_MAX_MESSAGE_BYTES):
            raise MessageSizeTooLargeError(f"{size} bytes, over {topic}'s max.message.bytes")
        self.sent.append((topic, key, value, headers or []))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def largest_record(key: bytes, limit: int = BROKER_MAX_MESSAGE_BYTES) -> bytes:
    """The longest value whose record (with `key`, no headers) still fits a `limit`-byte batch."""
    size = limit - DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"", [])
    while DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"x" * (size + 1), []) <= limit:
        size += 1
    while DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"x" * size, []) > limit:
        size -= 1
    return b'{"pad": "' + b"x" * (size - 11) + b'"}'


@dataclass
class FakeAdmin:
    """aiokafka's admin client as `ensure_topics` and `prepare_topics` use it: topics created
    (shared by every instance through `created`), a group coordinator, nothing else on the
    broker."""

    created: dict[str, dict[str, str]]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def list_topics(self) -> list[str]:
        return list(self.created)

    async def create_topics(self, topics: list[Any]) -> None:
        for topic in topics:
            self.created[topic.name] = dict(topic.topic_configs)

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return []

    async def find_coordinator(self, group_id: str) -> int:
        return 1  # the group's coordinator is elected already


@dataclass
class Rig:
    """A handler wired to fakes, with helpers to feed it records; `assigned` is the worker's
    assignment (the partitions `rebuild_index` loads), changed by tests to play a rebalance."""

    handler: RecordHandler
    engine: CartEngine
    store: MemoryStore
    sink: RecordingSink
    clock: FakeClock
    index: DueIndex
    planner: TickPlanner
    offsets: dict[str, int] = field(default_factory=dict)
    assigned: set[int] = field(default_factory=lambda: {0, 1})

    def record(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, partition: int = 0
    ) -> Record:
        """The next record of `topic` (not handled yet)."""
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        return Record(topic=topic, partition=partition, offset=offset, key=key, value=value)

    def event_record(self, partition: int = 0, **fields: Any) -> Record:
        data = {
            "event_id": f"e-{len(self.sink.outputs)}-{self.offsets.get(TOPICS.events, 0)}",
            "occurred_at": self.clock.now().isoformat(),
            **fields,
        }
        key = str(data["user_id"]).encode()
        return self.record(TOPICS.events, orjson.dumps(data), key=key, partition=partition)

    def tick_record(self, partition: int = 0) -> Record:
        return self.record(TOPICS.internal("ticks"), b"", partition=partition)

    async def feed(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, partition: int = 0
    ) -> Record:
        record = self.record(topic, value, key=key, partition=partition)
        await self.handler.handle(record)
        return record

    async def event(self, partition: int = 0, **fields: Any) -> Record:
        record = self.event_record(partition, **fields)
        await self.handler.handle(record)
        return record

    async def tick(self, partition: int = 0) -> Record:
        record = self.tick_record(partition)
        await self.handler.handle(record)
        return record

    def commands(self) -> list[dict[str, Any]]:
        return [orjson.loads(out.value) for out in self.sink.on(TOPICS.send_commands)]

    def with_handler(self, assigned: set[int] | None = None) -> Rig:
        """The same store and sink behind a fresh handler and index (a restarted worker, or
        another one: with its own `assigned`)."""
        index = DueIndex()
        planner = TickPlanner(resend_after=5)
        partitions = self.assigned if assigned is None else assigned
        handler = make_handler(
            self.engine, self.store, self.sink, self.clock, index, planner, lambda: set(partitions)
        )
        return replace(self, handler=handler, index=index, planner=planner, assigned=partitions)


def new_rig(assigned: set[int] | None = None) -> Rig:
    """A handler on fresh fakes; its assignment is the rig's `assigned` ({0, 1} unless given)."""
    engine = CartEngine()
    store = MemoryStore()
    sink = RecordingSink(store=store)
    clock = FakeClock()
    index = DueIndex()
    planner = TickPlanner(resend_after=5)
    partitions = {0, 1} if assigned is None else assigned
    handler = make_handler(
        engine, store, sink, clock, index, planner, assigned=lambda: set(partitions)
    )
    return Rig(
        handler=handler,
        engine=engine,
        store=store,
        sink=sink,
        clock=clock,
        index=index,
        planner=planner,
        assigned=partitions,
    )


def make_handler(
    engine: CartEngine,
    store: MemoryStore,
    sink: RecordingSink,
    clock: FakeClock,
    index: DueIndex,
    planner: TickPlanner,
    assigned: Callable[[], set[int]] = lambda: {0, 1},
) -> RecordHandler:
    return RecordHandler(
        config=HandlerConfig(topics=TOPICS, fire_limit=1000),
        engine=engine,
        codec=JsonCodec(),
        store=store,
        sink=sink,
        clock=clock,
        index=index,
        planner=planner,
        assigned=assigned,
    )
