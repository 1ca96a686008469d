"""The link routes through a real in-process HTTP server, with a recording event sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
import structlog
from aiohttp import ClientResponse, FormData, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from yarl import URL

from nudge.events import Event
from nudge.links.errors import MalformedToken
from nudge.links.guard import Limits
from nudge.links.keys import TokenKeys
from nudge.links.routes import PIXEL, SERVER_OPTIONS, build_app, safe_location
from nudge.links.sink import EventSink, RecordingEventSink
from nudge.links.urls import CLICK, MailRef, click_url, open_pixel_url, unsubscribe_url
from nudge.tokens import MAX_PART, sign

from .conftest import NOW, OLD_SECRET, SECRET, FakeClock, mail_ref

Client = TestClient[web.Request, web.Application]
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
BASE = "http://links.example"
MakeClient = Callable[..., Awaitable[Client]]
Stalled = tuple[asyncio.StreamReader, asyncio.StreamWriter]
StallPost = Callable[..., Awaitable[Stalled]]
TRACKING_LIFETIME = timedelta(days=90)


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
    """Start the app in a real server; factory arguments override tracking, limits and sink."""
    clients: list[Client] = []

    async def factory(
        *, tracking: bool = True, limits: Limits | None = None, events: EventSink | None = None
    ) -> Client:
        app = build_app(
            sink=events or sink,
            keys=keys,
            tracking=tracking,
            limits=limits,
            clock=clock.now,
            monotonic=clock.monotonic,
        )
        server = TestServer(app)
        await server.start_server(**SERVER_OPTIONS)  # the server options `nudge web` runs with
        client: Client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    return await make_client()


@pytest.fixture
async def stall_post() -> AsyncIterator[StallPost]:
    """Open a connection, send a one-click POST's headers and the first bytes of its body, stall.

    The connections are closed when the test ends.
    """
    opened: list[asyncio.StreamWriter] = []

    async def stall(client: Client, path: str, *, forwarded_for: str | None = None) -> Stalled:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        opened.append(writer)
        forwarded = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: links.example\r\n{forwarded}"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\n"
            "List-".encode()
        )
        await writer.drain()
        return reader, writer

    yield stall
    for writer in opened:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers of the answer on a raw connection (2 s at most)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2.0)
    status_line, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), headers


async def assert_error_page(response: ClientResponse, status: int) -> None:
    """An error is the bilingual HTML page with the token pages' headers, not bare text."""
    assert response.status == status
    assert response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    html = await response.text()
    assert '<section lang="ja">' in html
    assert '<section lang="en">' in html


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


# A part one character longer than `sign` ever makes: no token of ours, so malformed, not forged.
OVERSIZED_TOKEN = "A" * (MAX_PART + 1) + "." + "A" * 43


@pytest.mark.parametrize(
    "path",
    [
        f"/unsubscribe?token={OVERSIZED_TOKEN}",
        f"/o/{OVERSIZED_TOKEN}.gif",
        f"/c/{OVERSIZED_TOKEN}",
    ],
)
async def test_a_token_part_over_4096_characters_is_malformed_not_forged(
    client: Client, sink: RecordingEventSink, path: str
) -> None:
    """The documented contract: a token longer than any we sign is 400 on every route, not 403."""
    for method in ("GET", "POST"):
        if method == "POST" and not path.startswith("/unsubscribe"):
            continue
        response = await client.request(
            method, path, data=ONE_CLICK if method == "POST" else None, allow_redirects=False
        )
        assert response.status == 400
        assert "Location" not in response.headers
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


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "//evil.example/",
        "https:///nohost",
        # nudge.weburl's rule, the same the sender applies (tests/unit/test_weburl.py)
        "https://shop.example@evil.example/",
        " https://shop.example/",  # a leading space, which used to reach the Location as is
        "https://shop.example:0/",
        "https://shop.example/\u202e",
    ],
)
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


@pytest.mark.parametrize(
    "target",
    [
        "https://shop.example/login?next=%2Fcart%2Fitems&sig=q1w2e3r4%3D%3D",
        "https://shop.example/search?q=red+shoes&size=27%20cm&tag=a%2Bb",
        "https://shop.example/p/%E5%95%86%E5%93%81?name=%E3%83%86%E3%82%B9%E3%83%88",
        "https://shop.example/a%2Fb/%7Euser?x=1#reviews%20top",
        "HTTPS://Shop.Example:443/cart?ref=%2f",
    ],
)
async def test_a_click_redirects_to_the_signed_url_byte_for_byte(
    client: Client, sink: RecordingEventSink, ref: MailRef, target: str
) -> None:
    """The Location is the URL that was signed, not a re-serialisation of it: a shop's signed
    or encoded query (`%2F`, `%3D`, `+`, `%20`, encoded UTF-8, a fragment) arrives unchanged."""
    path = path_of(click_url(ref, target, base_url=BASE, secret=SECRET, now=NOW))
    for method in ("GET", "HEAD"):
        response = await client.request(method, path, allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == target
    [event] = sink.events
    assert event.properties["url"] == target


async def test_a_non_ascii_destination_is_encoded_and_nothing_else(
    client: Client, ref: MailRef
) -> None:
    """A header carries ASCII only: the host becomes IDNA and other non-ASCII characters UTF-8
    percent-escapes, as a browser sends them; every ASCII character stays as it was signed."""
    target = "https://例え.jp/商品?q=テスト&next=%2Fcart&sig=x%3D#ä"
    path = path_of(click_url(ref, target, base_url=BASE, secret=SECRET, now=NOW))
    response = await client.get(path, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == (
        "https://xn--r8jz45g.jp/%E5%95%86%E5%93%81?q=%E3%83%86%E3%82%B9%E3%83%88"
        "&next=%2Fcart&sig=x%3D#%C3%A4"
    )


@pytest.mark.parametrize(
    "target",
    [
        "https://shop.example/\r\nSet-Cookie: session=evil",
        "https://shop.example/\nLocation: https://evil.example/",
        "https://shop.example/\u2028",
        "https://shop.example/\x00",
    ],
)
async def test_a_signed_destination_with_a_control_character_never_reaches_the_header(
    client: Client, sink: RecordingEventSink, ref: MailRef, target: str
) -> None:
    """Sent as signed, the URL is still checked: a control character or line break is a 400."""
    path = path_of(click_url(ref, target, base_url=BASE, secret=SECRET, now=NOW))
    response = await client.get(path, allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    assert sink.events == []


def test_a_destination_that_has_no_utf_8_is_refused() -> None:
    """A lone surrogate cannot be percent-encoded (a token's JSON cannot hold one either)."""
    with pytest.raises(MalformedToken):
        safe_location("https://shop.example/#\ud800")


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


# Slow and malformed request bodies


async def test_a_body_that_stalls_is_answered_408_and_frees_its_slot(
    make_client: MakeClient, stall_post: StallPost, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Headers and part of a body, then nothing: 408 with the error page once the body read
    times out, and the in-flight slot is free again for everyone else's one-click POST."""
    client = await make_client(limits=Limits(max_in_flight=1, body_read_timeout=0.1))
    reader, _ = await stall_post(client, unsubscribe_path(ref))
    status, headers = await read_head(reader)
    assert status == 408
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Connection"] == "close"
    other = mail_ref(user_id="u-99", command_id="cmd-9", variant=None)
    assert (await client.post(unsubscribe_path(other), data=ONE_CLICK)).status == 200
    assert [event.user_id for event in sink.events] == ["u-99"]


async def test_one_client_cannot_hold_every_slot_with_stalled_bodies(
    make_client: MakeClient, stall_post: StallPost, ref: MailRef
) -> None:
    """A client at its in-flight share gets 429; another client is still served."""
    client = await make_client(
        limits=Limits(max_in_flight_per_client=1, trusted_proxies=("127.0.0.1",))
    )
    await stall_post(client, unsubscribe_path(ref), forwarded_for="198.51.100.1")
    pixel = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))

    async def status(forwarded: str) -> int:
        return (await client.get(pixel, headers={"X-Forwarded-For": forwarded})).status

    for _ in range(100):  # until the stalled POST has reached its handler
        if await status("198.51.100.1") == 429:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the stalled client was never limited")
    assert await status("198.51.100.2") == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"List-Unsubscribe=One-Click"),
        ("multipart/form-data; boundary=XX", b"garbage"),
        ("application/x-www-form-urlencoded; charset=bogus", b"List-Unsubscribe=One-Click"),
        ("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&x=\xff"),
        (
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n'
            b"Content-Type: text/plain; charset=bogus\r\n\r\nOne-Click\r\n--B--\r\n",
        ),
    ],
    ids=[
        "multipart without boundary",
        "garbage multipart",
        "urlencoded with an unknown charset",
        "a byte that is not UTF-8",
        "a part with an unknown charset",
    ],
)
async def test_a_body_that_cannot_be_read_is_a_400_page_and_changes_nothing(
    client: Client, sink: RecordingEventSink, ref: MailRef, content_type: str, body: bytes
) -> None:
    """With a genuine token, an unreadable one-click body is the 400 page, never a 500."""
    response = await client.post(
        unsubscribe_path(ref), data=body, headers={"Content-Type": content_type}
    )
    assert response.status == 400
    assert response.content_type == "text/html"
    assert '<html lang="ja">' in await response.text()
    assert sink.events == []


# Expired tracking links


async def test_an_expired_click_still_reaches_the_shop_without_recording(
    client: Client, sink: RecordingEventSink, clock: FakeClock, ref: MailRef
) -> None:
    """A product link in an old newsletter redirects to its signed URL; no click is recorded."""
    target = "https://shop.example/products/p-9"
    path = path_of(click_url(ref, target, base_url=BASE, secret=OLD_SECRET, now=NOW))
    clock.advance((TRACKING_LIFETIME + timedelta(days=1)).total_seconds())
    before = sample(
        "nudge_clicks_total", journey="cart_abandonment", step="reminder_1", variant="B"
    )
    for method in ("GET", "HEAD"):
        response = await client.request(method, path, allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == target
        assert response.headers["Referrer-Policy"] == "no-referrer"
    assert sink.events == []
    after = sample("nudge_clicks_total", journey="cart_abandonment", step="reminder_1", variant="B")
    assert after == before


async def test_an_expired_click_we_never_signed_is_still_refused(
    client: Client, sink: RecordingEventSink, clock: FakeClock, ref: MailRef
) -> None:
    """Only a genuine token is followed after expiry: a forged one is 403 and goes nowhere."""
    path = path_of(
        click_url(ref, "https://evil.example/", base_url=BASE, secret=b"attacker", now=NOW)
    )
    clock.advance((TRACKING_LIFETIME + timedelta(days=1)).total_seconds())
    response = await client.get(path, allow_redirects=False)
    assert response.status == 403
    assert "Location" not in response.headers
    assert sink.events == []


async def test_an_expired_signed_non_http_destination_is_still_refused(
    client: Client, clock: FakeClock, ref: MailRef
) -> None:
    """Expiry does not bypass the destination check: only absolute http(s) URLs."""
    token = sign(
        {**ref.payload(), "url": "javascript:alert(1)"},
        purpose=CLICK,
        secret=SECRET,
        now=NOW,
        ttl=timedelta(days=1),
    )
    clock.advance(timedelta(days=2).total_seconds())
    response = await client.get(f"/c/{token}", allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers


async def test_an_expired_pixel_is_served_without_recording(
    client: Client, sink: RecordingEventSink, clock: FakeClock, ref: MailRef
) -> None:
    """An old mail opened again shows its (invisible) image; no open is recorded."""
    path = path_of(open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW))
    clock.advance((TRACKING_LIFETIME + timedelta(days=1)).total_seconds())
    response = await client.get(path)
    assert response.status == 200
    assert await response.read() == PIXEL
    assert sink.events == []


# Error pages for what is not a token


@pytest.mark.parametrize("path", ["/admin", "/c/", "/c/abc.def/", "/o/", "/unsubscribe/x"])
async def test_an_unknown_path_is_the_404_page(client: Client, path: str) -> None:
    """A cut-off or mangled link gets the bilingual not-found page."""
    response = await client.get(path)
    await assert_error_page(response, 404)
    assert "ページが見つかりません" in await response.text()


@pytest.mark.parametrize(
    ("method", "path"), [("DELETE", "/unsubscribe?token=x"), ("POST", "/o/abc.def.gif")]
)
async def test_a_wrong_method_is_the_405_page(client: Client, method: str, path: str) -> None:
    """A method the route does not serve gets the 405 page, still naming the allowed ones."""
    response = await client.request(method, path)
    await assert_error_page(response, 405)
    assert "GET" in response.headers["Allow"]


async def test_an_oversized_body_is_the_413_page_and_changes_nothing(
    client: Client, sink: RecordingEventSink, ref: MailRef
) -> None:
    """Request bodies are bounded (4 KiB): a large POST gets the 413 page and no event."""
    response = await client.post(unsubscribe_path(ref), data={**ONE_CLICK, "pad": "x" * 10_000})
    await assert_error_page(response, 413)
    assert sink.events == []


async def test_a_client_over_its_rate_gets_the_429_page(
    make_client: MakeClient, ref: MailRef
) -> None:
    """The rate limit answers with the page and Retry-After."""
    client = await make_client(limits=Limits(per_client_rate=0.001, per_client_burst=1))
    path = unsubscribe_path(ref)
    assert (await client.get(path)).status == 200
    response = await client.get(path)
    await assert_error_page(response, 429)
    assert response.headers["Retry-After"]


async def test_shedding_load_is_the_503_page(make_client: MakeClient, ref: MailRef) -> None:
    """Beyond the in-flight cap, link requests get the 503 page with Retry-After."""
    client = await make_client(limits=Limits(max_in_flight=0))
    response = await client.get(unsubscribe_path(ref))
    await assert_error_page(response, 503)
    assert response.headers["Retry-After"]


class BrokenSink:
    """A sink with a bug: publishing raises something no handler expects."""

    ready = True

    async def publish(self, event: Event) -> None:
        raise RuntimeError("a bug")


async def test_a_bug_is_the_500_page_and_the_log_holds_no_token(
    make_client: MakeClient, ref: MailRef
) -> None:
    """An unexpected error is the 500 page; the log names it without the request's token."""
    client = await make_client(events=BrokenSink())
    path = unsubscribe_path(ref)
    with structlog.testing.capture_logs() as logs:
        response = await client.post(path, data=ONE_CLICK)
    await assert_error_page(response, 500)
    [failure] = [entry for entry in logs if entry["event"] == "request_failed"]
    assert failure["error"] == "RuntimeError"
    token = URL(path).query["token"]
    assert all(token not in repr(entry) for entry in logs)


async def test_a_request_aiohttp_cannot_parse_gets_its_plain_400_and_a_closed_connection(
    client: Client,
) -> None:
    """The documented limit: a garbage request line never reaches a route or middleware, so it
    is aiohttp's own plain-text 400 (aiohttp 3.14 has no supported hook to answer it with the
    bilingual page), the connection is closed, and the server keeps serving everyone else."""
    assert client.host == "127.0.0.1"
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(b"GARBAGE /c/abc.def\x01 NOT-HTTP\r\n\r\n")
        await writer.drain()
        status, headers = await read_head(reader)
        await asyncio.wait_for(reader.read(), 2.0)  # returns only once the server has closed
        assert reader.at_eof()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status == 400
    assert headers["Content-Type"].startswith("text/plain")
    assert (await client.get("/livez")).status == 200


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /c/SECRETPART.TOKENPART\x01 HTTP/1.1",  # a bad target on the first request
        b"G\x00T /c/SECRETPART.TOKENPART HTTP/1.1",  # a bad method on the first request
    ],
)
async def test_a_request_aiohttp_cannot_parse_is_logged_without_what_it_quoted(
    client: Client, caplog: pytest.LogCaptureFixture, request_line: bytes
) -> None:
    """aiohttp's error for an unparseable request quotes the request line, where a link token
    can be: the log keeps the event and the error's class, never the quoted bytes."""
    caplog.set_level(logging.DEBUG, logger="nudge.links.http")
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request_line + b"\r\nHost: x\r\n\r\n")
        await writer.drain()
        status, _headers = await read_head(reader)
        await asyncio.wait_for(reader.read(), 2.0)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status == 400
    logged = [r for r in caplog.records if r.name == "nudge.links.http"]
    assert [r.getMessage().split(":")[0] for r in logged] == ["unparseable_request"]
    assert all(r.exc_info is None for r in logged)
    assert "SECRETPART" not in caplog.text
