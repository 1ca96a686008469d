"""`nudge web` end to end with Kafka: what a link does arrives on the events topic."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer

from nudge.codec import decode_event
from nudge.events import Event
from nudge.links.urls import MailRef, click_url, open_pixel_url, unsubscribe_url
from nudge.settings import Settings
from nudge.testing import Service as WebProcess
from nudge.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REF = MailRef(
    user_id="u-it-1",
    command_id="cmd-it-1",
    journey="cart_abandonment",
    step="reminder_1",
    variant=None,
    locale="en",
)


async def read_events(settings: Settings, *, expected: int, within: float = 20.0) -> list[Event]:
    """Read the events topic from the start until `expected` events, or for `within` seconds."""
    consumer = AIOKafkaConsumer(
        Topics(settings.topic_prefix).events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[tuple[bytes | None, Event]] = []
    try:
        async with asyncio.timeout(within):
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    found.extend((r.key, decode_event(r.value)) for r in records)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    for key, event in found:
        assert key == event.user_id.encode(), "events must be keyed by user_id"
    return [event for _, event in found]


async def test_one_click_unsubscribe_lands_on_the_events_topic(web_process: WebProcess) -> None:
    """POST the unsubscribe URL: 200, and one user.unsubscribed keyed by the user is on Kafka."""
    settings = web_process.settings
    url = unsubscribe_url(
        REF, base_url=web_process.base_url, secret=settings.token_secret, now=datetime.now(UTC)
    )
    async with aiohttp.ClientSession() as http:
        forged = await http.post(url[:-2] + "xx", data={"List-Unsubscribe": "One-Click"})
        assert forged.status == 403
        for _ in range(2):
            response = await http.post(url, data={"List-Unsubscribe": "One-Click"})
            assert response.status == 200
    events = await read_events(settings, expected=2, within=8)
    assert [e.type for e in events] == ["user.unsubscribed"]
    assert events[0].user_id == "u-it-1"
    assert events[0].properties["scope"] == "marketing"
    assert events[0].properties["command_id"] == "cmd-it-1"


async def test_open_and_click_land_on_the_events_topic(web_process: WebProcess) -> None:
    """The pixel and the redirect publish email.opened and email.clicked {command_id, url}."""
    settings = web_process.settings
    now = datetime.now(UTC)
    secret = settings.token_secret
    target = "https://shop.example/products/p-9?ref=mail"
    async with aiohttp.ClientSession() as http:
        pixel = await http.get(
            open_pixel_url(REF, base_url=web_process.base_url, secret=secret, now=now)
        )
        assert pixel.status == 200
        click = await http.get(
            click_url(REF, target, base_url=web_process.base_url, secret=secret, now=now),
            allow_redirects=False,
        )
        assert click.status == 302
        assert click.headers["Location"] == target
    events = await read_events(settings, expected=2)
    assert sorted(e.type for e in events) == ["email.clicked", "email.opened"]
    clicked = next(e for e in events if e.type == "email.clicked")
    assert clicked.properties["url"] == target
    assert clicked.properties["command_id"] == "cmd-it-1"


async def test_metrics_count_the_link_traffic_and_sigterm_stops_cleanly(
    web_process: WebProcess,
) -> None:
    """/metrics shows the unsubscribe; SIGTERM exits 0 after flushing."""
    url = unsubscribe_url(
        REF,
        base_url=web_process.base_url,
        secret=web_process.settings.token_secret,
        now=datetime.now(UTC),
    )
    async with aiohttp.ClientSession() as http:
        assert (await http.post(url, data={"List-Unsubscribe": "One-Click"})).status == 200
        text = await (await http.get(f"{web_process.base_url}/metrics")).text()
    assert (
        'nudge_unsubscribes_total{journey="cart_abandonment",step="reminder_1",variant="none"} 1.0'
        in text
    )
    assert 'nudge_build_info{service="web"' in text
    assert web_process.stop() == 0


async def test_a_flood_of_forged_requests_is_limited_and_publishes_nothing(
    web_process: WebProcess,
) -> None:
    """300 forged unsubscribes at once: 403s then 429s, nothing on Kafka, health unaffected."""
    settings = web_process.settings
    url = unsubscribe_url(
        REF, base_url=web_process.base_url, secret=b"forger", now=datetime.now(UTC)
    )
    async with aiohttp.ClientSession() as http:

        async def attempt() -> int:
            async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as response:
                return response.status

        statuses = await asyncio.gather(*(attempt() for _ in range(300)))
        assert set(statuses) <= {403, 429}
        assert statuses.count(429) >= 100, "the per-client burst (100) must be enforced"
        assert (await http.get(f"{web_process.base_url}/livez")).status == 200
        assert (await http.get(f"{web_process.base_url}/readyz")).status == 200
    assert await read_events(settings, expected=1, within=3) == []


async def test_without_kafka_it_is_alive_not_ready_and_never_fakes_an_unsubscribe(
    web_without_kafka: WebProcess,
) -> None:
    """No broker: /livez 200, /readyz 503, unsubscribe 503 + Retry-After, clicks still redirect."""
    web = web_without_kafka
    now = datetime.now(UTC)
    secret = web.settings.token_secret
    target = "https://shop.example/"
    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{web.base_url}/readyz")).status == 503
        unsubscribe = await http.post(
            unsubscribe_url(REF, base_url=web.base_url, secret=secret, now=now),
            data={"List-Unsubscribe": "One-Click"},
        )
        assert unsubscribe.status == 503
        assert unsubscribe.headers["Retry-After"]
        click = await http.get(
            click_url(REF, target, base_url=web.base_url, secret=secret, now=now),
            allow_redirects=False,
        )
        assert click.status == 302
        assert click.headers["Location"] == target
    assert web.stop() == 0
