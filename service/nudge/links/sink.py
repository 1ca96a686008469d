"""Where link events go: the `EventSink` seam, its Kafka implementation and a recording fake.

The real sink publishes SPEC §2 events to `<prefix>events`, keyed by `user_id` (so they land on
the user's partition, in order with the app's own events), with `acks=all` and idempotence, and a
short linger so a burst of clicks is sent in a few batches instead of one request each.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from nudge.codec import encode_event
from nudge.events import Event
from nudge.links.errors import SinkUnavailable

log = structlog.get_logger("nudge.links.sink")


class EventSink(Protocol):
    """Accepts behaviour events; `publish` returns once the event is durably written."""

    @property
    def ready(self) -> bool:
        """True once events can be written (the producer is connected)."""
        ...

    async def publish(self, event: Event) -> None:
        """Write `event`, or raise `SinkUnavailable`."""
        ...


class KafkaEventSink:
    """Publishes to the events topic with aiokafka; connects in the background, with retries."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        timeout: float = 10.0,
        linger_ms: int = 5,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._timeout = timeout
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def connect(self, *, retry_delay: float = 1.0, max_delay: float = 30.0) -> None:
        """Start the producer, retrying with backoff until the broker answers (or cancelled)."""
        delay = retry_delay
        while self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap_servers,
                acks="all",
                enable_idempotence=True,
                linger_ms=self._linger_ms,
                request_timeout_ms=int(self._timeout * 1000),
            )
            try:
                await producer.start()
            except KafkaError as err:
                await producer.stop()
                log.warning("kafka_unavailable", error=str(err), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
                continue
            self._producer = producer
            log.info("kafka_connected", topic=self._topic)

    async def publish(self, event: Event) -> None:
        producer = self._producer
        if producer is None:
            raise SinkUnavailable("not connected to Kafka yet; check KAFKA_BOOTSTRAP_SERVERS")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(
                    self._topic, encode_event(event), key=event.user_id.encode()
                ),
                timeout=self._timeout,
            )
        except (KafkaError, TimeoutError) as err:
            raise SinkUnavailable(f"Kafka did not accept the event: {err!r}") from err

    async def close(self) -> None:
        """Flush what is buffered and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


@dataclass(slots=True)
class RecordingEventSink:
    """The fake: keeps every published event in `events`; `available=False` simulates an outage."""

    events: list[Event] = field(default_factory=list)
    available: bool = True

    @property
    def ready(self) -> bool:
        return self.available

    async def publish(self, event: Event) -> None:
        if not self.available:
            raise SinkUnavailable("the recording sink is switched off")
        self.events.append(event)
