"""The link routes through a real in-process HTTP server, with a recording event sink."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from yarl import URL

from nudge.links.guard import Limits
from nudge.links.keys import TokenKeys
from nudge.links.routes import PIXEL, build_app
from nudge.links.sink import RecordingEventSink
from nudge.links.urls import CLICK, MailRef, click_url, open_pixel_url, unsubscribe_url
from nudge.tokens import sign

from .conftest import NOW, OLD_SECRET, SECRET, FakeClock, mail_ref

Client = TestClient[web.Request, web.Application]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
BASE = "http://links.example"
MakeClient = Callable[..., Awaitable[Client]]


def path_of(url: str) -> str:
    """The path and query of a URL the sender would put in a mail."""
    return URL(url).path_qs if "?" in url else URL(url).raw_path


def unsubscribe_path(ref: MailRef, *, secret: bytes = SECRET) -> str:
    return path_of(unsubscribe_url(ref, base_url=BASE, secret=secret, now=NOW))


def tampered(path: str) -> str:
    """Flip one character of the signature at the end of the token."""
    last = path[-1]
    return path[:-1] + ("A" if last != "A" else "B")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sink() -> RecordingEventSink:
    return RecordingEventSink()


@pytest.fixture
async def make_client(
    sink: RecordingEventSink, keys: TokenKeys, clock: FakeClock
) -> AsyncIterator[MakeClient]:
    """Start the app in a real server; factory arguments override tracking and limits."""
    clients: list[Client] = []

    async def factory(*, tracking: bool = True, limits: Limits | None = None) -> Client:
        app = build_app(
            sink=sink,
            keys=keys,
            tracking=tracking,
            limits=limits,
            clock=clock.now,
            monotonic=clock.monotonic,
        )
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


async def test_one_click_post_unsubscribes_once(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """RFC 8058: a POST with List-Unsubscribe=One-Click answers 200 and emits one event."""
    before = sample(
        "nudge_unsubscribes_total", journey="cart_abandonment", step="reminder_1", variant="B"
    )
    response = await client.post(unsubscribe_path(ref), data=ONE_CLICK)
    assert response.status == 200
    [event] = sink.events
    assert event.type == "user.unsubscribed"
    assert event.user_id == "u-42"
    assert event.properties["scope"] == "marketing"
    assert event.properties["command_id"] == "cmd-1"
    assert event.properties["journey"] == "cart_abandonment"
    assert event.occurred_at == NOW
    after = sample(
        "nudge_unsubscribes_total", journey="cart_abandonment", step="reminder_1", variant="B"
    )
    assert after == before + 1


async def test_one_click_also_accepts_multipart(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Some mailbox providers send the one-click body as multipart/form-data."""
    form = FormData(ONE_CLICK, default_to_multipart=True)
    response = await client.post(unsubscribe_path(ref), data=form)
    assert response.status == 200
    assert len(sink.events) == 1


async def test_a_second_post_is_answered_but_not_published_again(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """A double click (or provider POST then user click) gives 200 twice and one event."""
    for _ in range(2):
        response = await client.post(unsubscribe_path(ref), data=ONE_CLICK)
        assert response.status == 200
    assert len(sink.events) == 1


async def test_a_post_without_the_one_click_body_changes_nothing(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """A POST that is not RFC 8058's (no List-Unsubscribe=One-Click) is a 400."""
    response = await client.post(unsubscribe_path(ref), data={"other": "x"})
    assert response.status == 400
    assert sink.events == []


@pytest.mark.parametrize(
    ("locale", "button", "lang"),
    [("ja", "配信を停止する", "ja"), ("en-US", ">Unsubscribe</button>", "en")],
)
async def test_get_shows_a_confirmation_page_in_the_users_language(
    client: Client, sink: RecordingEventSink, locale: str, button: str, lang: str
) -> None:
    """GET renders a page in the token's language with a button; it unsubscribes nobody."""
    path = unsubscribe_path(mail_ref(locale=locale, variant=None))
    response = await client.get(path)
    html = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    assert f'<html lang="{lang}">' in html
    assert button in html
    assert f'action="unsubscribe?{URL(path).raw_query_string}"' in html
    assert sink.events == []


async def test_the_page_carries_security_headers(client: Client, ref: MailRef) -> None:
    """The HTML loads nothing, cannot be framed, is not cached and leaks no referrer."""
    response = await client.get(unsubscribe_path(ref))
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


async def test_the_form_on_the_page_unsubscribes(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Submitting the page's own form (its action and hidden field) produces the event."""
    path = unsubscribe_path(ref)
    html = await (await client.get(path)).text()
    action = html.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    response = await client.post(f"/{action}", data=ONE_CLICK)
    assert response.status == 200
    assert len(sink.events) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    ("how", "status"),
    [
        ("tampered", 403),
        ("wrong_purpose", 403),
        ("expired", 410),
        ("garbage", 400),
        ("missing", 400),
    ],
)
async def test_a_bad_unsubscribe_token_is_refused_and_changes_nothing(
    client: Client,
    sink: RecordingEventSink,
    clock: FakeClock,
    ref: MailRef,
    method: str,
    how: str,
    status: int,
) -> None:
    """Tampered or misused → 403, expired → 410, not a token → 400; never an event."""
    path = {
        "tampered": tampered(unsubscribe_path(ref)),
        "wrong_purpose": "/unsubscribe?token="
        + path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))
        .removeprefix("/o/")
        .removesuffix(".gif"),
        "expired": unsubscribe_path(ref),
        "garbage": "/unsubscribe?token=%3Cscript%3E",
        "missing": "/unsubscribe",
    }[how]
    if how == "expired":
        clock.advance(timedelta(days=366).total_seconds())
    response = await client.request(method, path, data=ONE_CLICK if method == "POST" else None)
    assert response.status == status
    assert "<script>" not in await response.text()
    assert sink.events == []


async def test_a_link_signed_with_the_previous_secret_still_unsubscribes(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Key rotation: mail sent before the rotation keeps a working unsubscribe link."""
    response = await client.post(unsubscribe_path(ref, secret=OLD_SECRET), data=ONE_CLICK)
    assert response.status == 200
    assert len(sink.events) == 1


async def test_when_kafka_is_down_unsubscribe_says_retry_later(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """No 2xx unless the event is durable: 503 with Retry-After, then success once it is back."""
    sink.available = False
    response = await client.post(unsubscribe_path(ref), data=ONE_CLICK)
    assert response.status == 503
    assert response.headers["Retry-After"]
    sink.available = True
    response = await client.post(unsubscribe_path(ref), data=ONE_CLICK)
    assert response.status == 200
    assert len(sink.events) == 1


async def test_a_click_redirects_to_the_url_in_the_mail_and_counts(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """302 to exactly the embedded URL, and one email.clicked {command_id, url}."""
    target = "https://shop.example/cart?utm_source=nudge&x=1"
    before = sample(
        "nudge_clicks_total", journey="cart_abandonment", step="reminder_1", variant="B"
    )
    path = path_of(click_url(ref, target, base_url=BASE, secret=SECRET, now=NOW))
    response = await client.get(path + "?url=https://evil.example/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == target
    assert response.headers["Referrer-Policy"] == "no-referrer"
    [event] = sink.events
    assert event.type == "email.clicked"
    assert dict(event.properties) == {
        "command_id": "cmd-1",
        "url": target,
        "journey": "cart_abandonment",
        "step": "reminder_1",
        "variant": "B",
    }
    after = sample("nudge_clicks_total", journey="cart_abandonment", step="reminder_1", variant="B")
    assert after == before + 1


async def test_a_tampered_click_token_does_not_redirect(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """A click token whose URL or signature was changed is a 403 and goes nowhere."""
    path = path_of(click_url(ref, "https://shop.example/", base_url=BASE, secret=SECRET, now=NOW))
    response = await client.get(tampered(path), allow_redirects=False)
    assert response.status == 403
    assert "Location" not in response.headers
    assert sink.events == []


@pytest.mark.parametrize("target", ["javascript:alert(1)", "//evil.example/", "https:///nohost"])
async def test_a_signed_non_http_destination_is_still_refused(
    client: Client, sink: RecordingEventSink, ref: MailRef, target: str
) -> None:
    """Defence in depth: even a genuine token redirects only to an absolute http(s) URL."""
    token = sign(
        {**ref.payload(), "url": target},
        purpose=CLICK,
        secret=SECRET,
        now=NOW,
        ttl=timedelta(days=1),
    )
    response = await client.get(f"/c/{token}", allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers
    assert sink.events == []


async def test_a_head_request_redirects_without_counting(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Link scanners probe with HEAD; that is not a click."""
    path = path_of(click_url(ref, "https://shop.example/", base_url=BASE, secret=SECRET, now=NOW))
    response = await client.head(path, allow_redirects=False)
    assert response.status == 302
    assert sink.events == []


async def test_the_pixel_is_a_gif_and_records_an_open(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """GET /o/<token>.gif returns a 1×1 GIF and one email.opened."""
    path = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "image/gif"
    body = await response.read()
    assert body == PIXEL
    assert body.startswith(b"GIF89a\x01\x00\x01\x00")
    [event] = sink.events
    assert event.type == "email.opened"
    assert event.properties["command_id"] == "cmd-1"


async def test_a_repeated_open_is_one_event(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Image proxies fetch a pixel again and again; the stream sees one open per mail."""
    path = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))
    for _ in range(5):
        assert (await client.get(path)).status == 200
    assert len(sink.events) == 1


async def test_a_bad_pixel_token_is_refused_with_a_gif(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """A forged pixel gets 403 (still an image, so no broken icon) and no event."""
    path = path_of(open_pixel_url(ref, base_url=BASE, secret=b"someone-else", now=NOW))
    response = await client.get(path)
    assert response.status == 403
    assert response.content_type == "image/gif"
    assert sink.events == []


async def test_with_tracking_off_links_work_but_record_nothing(
    make_client: MakeClient, sink: RecordingEventSink, ref: MailRef
) -> None:
    """NUDGE_TRACKING=0 (privacy): old mails' links still redirect; no open or click is recorded."""
    client: Client = await make_client(tracking=False)
    click = path_of(click_url(ref, "https://shop.example/", base_url=BASE, secret=SECRET, now=NOW))
    pixel = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))
    assert (await client.get(click, allow_redirects=False)).status == 302
    assert (await client.get(pixel)).status == 200
    assert sink.events == []


async def test_when_kafka_is_down_the_click_still_redirects(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Tracking is best effort: the person gets where they wanted; the loss is counted."""
    sink.available = False
    before = sample("nudge_link_events_lost_total", type="email.clicked")
    path = path_of(click_url(ref, "https://shop.example/", base_url=BASE, secret=SECRET, now=NOW))
    response = await client.get(path, allow_redirects=False)
    assert response.status == 302
    assert sample("nudge_link_events_lost_total", type="email.clicked") == before + 1


async def test_a_client_over_its_rate_gets_429(
    make_client: MakeClient, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Beyond its burst, one client address is told to slow down, and nothing is published."""
    client: Client = await make_client(limits=Limits(per_client_rate=0.001, per_client_burst=2))
    path = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))
    statuses = [(await client.get(path)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert (await client.get("/livez")).status == 200


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    make_client: MakeClient, ref: MailRef
) -> None:
    """With the proxy trusted, X-Forwarded-For names the client the limit applies to."""
    client = await make_client(
        limits=Limits(per_client_rate=0.001, per_client_burst=1, trusted_proxies=("127.0.0.1",))
    )
    path = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))

    async def status(forwarded: str) -> int:
        return (await client.get(path, headers={"X-Forwarded-For": forwarded})).status

    assert [await status("198.51.100.1"), await status("198.51.100.2")] == [200, 200]
    assert await status("198.51.100.1") == 429


async def test_an_oversized_body_is_refused(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Request bodies are bounded (4 KiB): a large POST is a 413 and changes nothing."""
    response = await client.post(unsubscribe_path(ref), data={**ONE_CLICK, "pad": "x" * 10_000})
    assert response.status == 413
    assert sink.events == []


async def test_health_and_metrics(client: Client, sink: RecordingEventSink) -> None:
    """livez always; readyz only with a connected sink; /metrics is Prometheus text."""
    assert (await client.get("/livez")).status == 200
    assert (await client.get("/readyz")).status == 200
    sink.available = False
    assert (await client.get("/readyz")).status == 503
    metrics = await client.get("/metrics")
    assert metrics.status == 200
    text = await metrics.text()
    assert "nudge_http_requests_total" in text
    assert 'route="readyz",status="503"' in text


async def test_unknown_paths_are_404(client: Client) -> None:
    """Nothing else is served."""
    assert (await client.get("/admin")).status == 404
