"""The HTTP routes of the link service: unsubscribe, open pixel, click redirect, health, metrics.

    GET  /unsubscribe?token=  confirmation page (ja/en), a button that POSTs    —
    POST /unsubscribe?token=  RFC 8058 one-click, body List-Unsubscribe=One-Click  user.unsubscribed
    GET  /o/<token>.gif       a 1×1 GIF                                           email.opened
    GET  /c/<token>           302 to the URL inside the token, nowhere else       email.clicked
    GET  /livez /readyz       alive; ready once the Kafka producer is connected   —
    GET  /metrics             Prometheus exposition of this process               —

A token that fails verification gets 400 (malformed) or 403 (forged, tampered, or made for another
route) and produces nothing; an expired unsubscribe token gets 410. A genuine but expired click or
pixel token is still served (redirect, GIF) and records nothing: the URL was signed by us, so no
open redirect is possible, and the lifetime limits what is recorded, not where the link goes.
`GET` never unsubscribes and `HEAD` never records anything, because link scanners and mail security
gateways fetch every URL in a mail. An unsubscribe answers 2xx only once the event is in Kafka (503
with `Retry-After` otherwise); opens and clicks are best effort: the pixel and the redirect are
served even when Kafka is slow or down. Every error, token or not, is an HTML page in Japanese and
English with the token pages' headers (`error_pages`), except aiohttp's own plain 400 for a request
it cannot parse, which no route or middleware sees (docs/links.md, Known limits).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from nudge.events import Event
from nudge.links.actions import click_event, open_event, unsubscribe_event
from nudge.links.errors import TOKEN_ERRORS, MalformedToken, SinkUnavailable, TokenError
from nudge.links.guard import (
    ClientSlots,
    Limits,
    RateLimiter,
    RecentIds,
    client_address,
    client_key,
    parse_networks,
)
from nudge.links.keys import TokenKeys, VerifiedLink, verify_link
from nudge.links.pages import SECURITY_HEADERS, Lang, PageName, lang_of, render
from nudge.links.sink import EventSink
from nudge.links.urls import CLICK, OPEN, UNSUBSCRIBE
from nudge.metrics import (
    CLICKS,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    LINK_EVENTS_LOST,
    NO_VARIANT,
    OPENS,
    UNSUBSCRIBES,
    exposition,
)
from nudge.weburl import web_url_problem

Clock = Callable[[], datetime]
Monotonic = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PIXEL: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
ONE_CLICK_FIELD: Final = "List-Unsubscribe"
ONE_CLICK_VALUE: Final = "One-Click"
LINK_ROUTES: Final = frozenset({"unsubscribe", "open", "click"})
# Opens and clicks must not keep a person waiting on Kafka: after this, serve and count a loss.
TRACKING_PUBLISH_TIMEOUT: Final = 2.0
RETRY_AFTER_SECONDS: Final = "30"
# The page for each error status the framework raises (404 no route, 405 wrong method, 413 body
# over the limit); any other 4xx gets "invalid", any 5xx "unavailable".
ERROR_PAGES: Final[dict[int, PageName]] = {
    404: "not_found",
    405: "not_allowed",
    413: "too_large",
}
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")
log = structlog.get_logger("nudge.links")


class _NoQuotedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with the parser's error, whose text quotes the bytes
    it could not parse: a request line, so perhaps a link token. Keep the event and the error's
    class, drop the quote (and the traceback, which repeats it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "unparseable_request: %s (status %s)"
            record.args = (type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
        return True


def _server_logger() -> logging.Logger:
    logger = logging.getLogger("nudge.links.http")
    if not any(isinstance(f, _NoQuotedRequests) for f in logger.filters):
        logger.addFilter(_NoQuotedRequests())
    return logger


# aiohttp's server options for the link service (`AppRunner`, `TestServer`): no access log, since
# every link URL is a bearer credential and logs outlive links; the server's own error log
# without what it could not parse.
SERVER_OPTIONS: Final[dict[str, Any]] = {"access_log": None, "logger": _server_logger()}


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_app(
    *,
    sink: EventSink,
    keys: TokenKeys,
    tracking: bool = True,
    limits: Limits | None = None,
    clock: Clock = utc_now,
    monotonic: Monotonic = time.monotonic,
) -> web.Application:
    """The aiohttp application; `sink` receives the events, `keys` verify the tokens."""
    routes = LinkRoutes(
        sink=sink,
        keys=keys,
        tracking=tracking,
        limits=limits or Limits(),
        clock=clock,
        monotonic=monotonic,
    )
    app = web.Application(
        client_max_size=routes.limits.max_body_bytes,
        middlewares=[observe, error_pages, routes.guard],
    )
    unsubscribe = app.router.add_resource("/unsubscribe", name="unsubscribe")
    unsubscribe.add_route("GET", routes.unsubscribe_page)
    unsubscribe.add_route("POST", routes.unsubscribe)
    app.router.add_get(r"/o/{token:[A-Za-z0-9_.-]+}.gif", routes.pixel, name="open")
    app.router.add_get(r"/c/{token:[^/]+}", routes.click, name="click")
    app.router.add_get("/livez", routes.livez, name="livez")
    app.router.add_get("/readyz", routes.readyz, name="readyz")
    app.router.add_get("/metrics", routes.metrics, name="metrics")
    return app


class LinkRoutes:
    """The handlers, holding the sink, keys and flood limits they share."""

    def __init__(
        self,
        *,
        sink: EventSink,
        keys: TokenKeys,
        tracking: bool,
        limits: Limits,
        clock: Clock,
        monotonic: Monotonic,
    ) -> None:
        self.sink = sink
        self.keys = keys
        self.tracking = tracking
        self.limits = limits
        self.clock = clock
        self.monotonic = monotonic
        self.in_flight = 0
        self.limiter = RateLimiter(
            rate=limits.per_client_rate, burst=limits.per_client_burst, max_keys=limits.max_clients
        )
        # Per-client limits need to know the client: `--per-client-rate 0` (a proxy that is not
        # trusted, so every request seems to come from it) turns this one off too.
        self.slots = ClientSlots(
            limit=limits.max_in_flight_per_client if limits.per_client_rate > 0 else 0
        )
        self.recent = RecentIds(max_size=limits.recent_ids, ttl=limits.recent_ttl)
        self.trusted_proxies = parse_networks(limits.trusted_proxies)

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Shed load beyond the in-flight cap (503), and clients over their rate or holding too
        many requests in flight (429)."""
        if _route_name(request) not in LINK_ROUTES:
            return await handler(request)
        if self.in_flight >= self.limits.max_in_flight:
            return _page("unavailable", status=503, headers={"Retry-After": "1"})
        client = client_key(
            client_address(
                request.remote, request.headers.get("X-Forwarded-For"), self.trusted_proxies
            )
        )
        if not self.limiter.allow(client, self.monotonic()) or not self.slots.acquire(client):
            return _page("unavailable", status=429, headers={"Retry-After": "1"})
        self.in_flight += 1
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            self.slots.release(client)

    async def unsubscribe_page(self, request: web.Request) -> web.StreamResponse:
        """GET: the confirmation page; changes nothing (scanners follow links)."""
        token = request.query.get("token", "")
        try:
            link = verify_link(token, purpose=UNSUBSCRIBE, keys=self.keys, now=self.clock())
        except TOKEN_ERRORS as err:
            return _refused(request, err)
        return _page("confirm", lang=lang_of(link.ref.locale), token=token)

    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        """POST: RFC 8058 one-click unsubscribe; 200 once `user.unsubscribed` is in Kafka."""
        token = request.query.get("token", "")
        try:
            link = verify_link(token, purpose=UNSUBSCRIBE, keys=self.keys, now=self.clock())
        except TOKEN_ERRORS as err:
            return _refused(request, err)
        lang = lang_of(link.ref.locale)
        try:
            form = await asyncio.wait_for(request.post(), self.limits.body_read_timeout)
        except TimeoutError:
            # Headers, then a body that never finishes: without this bound each such request
            # holds an in-flight slot for as long as its sender keeps the connection open.
            log.info("body_too_slow", route="unsubscribe")
            response = _page("unavailable", lang=lang, status=408)
            response.force_close()
            return response
        except (ValueError, LookupError) as err:
            # What aiohttp's form parser raises for a body it cannot read: multipart without a
            # boundary or with garbage, an unknown charset, bytes not in the declared charset.
            log.info("body_refused", route="unsubscribe", reason=type(err).__name__)
            return _page("invalid", lang=lang, status=400)
        if form.get(ONE_CLICK_FIELD) != ONE_CLICK_VALUE:
            return _page("invalid", lang=lang, status=400)
        try:
            published = await self._publish(unsubscribe_event(link.ref, now=self.clock()))
        except SinkUnavailable as err:
            log.warning("unsubscribe_not_recorded", error=str(err), **_ids(link))
            return _page(
                "unavailable", lang=lang, status=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        if published:
            UNSUBSCRIBES.labels(*_labels(link)).inc()
            log.info("unsubscribed", **_ids(link))
        return _page("done", lang=lang)

    async def pixel(self, request: web.Request) -> web.StreamResponse:
        """The open pixel: always a GIF (mail clients show no broken image), 4xx when refused.

        A genuine but expired pixel is served (200) and records nothing, like an expired click.
        """
        try:
            link = verify_link(
                request.match_info["token"],
                purpose=OPEN,
                keys=self.keys,
                now=self.clock(),
                accept_expired=True,
            )
        except TOKEN_ERRORS as err:
            _note_refusal(request, err)
            return _gif(status=err.status)
        if self.tracking and request.method == "GET" and not link.expired:
            event = open_event(link.ref, now=self.clock())
            if await self._publish_tracking(event):
                OPENS.labels(*_labels(link)).inc()
        return _gif(status=200)

    async def click(self, request: web.Request) -> web.StreamResponse:
        """The click redirect: 302 to the URL signed into the token, never one from the request.

        A genuine but expired token still redirects, and records no click. The destination was
        signed by us, so following it is no open redirect; what the token's lifetime limits is
        what gets recorded (a campaign's clicks stop counting after 90 days), while the product
        link in an old newsletter keeps reaching the shop instead of a dead end.
        """
        try:
            link = verify_link(
                request.match_info["token"],
                purpose=CLICK,
                keys=self.keys,
                now=self.clock(),
                accept_expired=True,
            )
            location = safe_location(link.url)
        except TOKEN_ERRORS as err:
            return _refused(request, err)
        if link.expired:
            log.info("expired_click_followed", **_ids(link))
        elif self.tracking and request.method == "GET" and link.url is not None:
            event = click_event(link.ref, link.url, now=self.clock())
            if await self._publish_tracking(event):
                CLICKS.labels(*_labels(link)).inc()
        return web.Response(
            status=302,
            headers={
                "Location": location,
                "Cache-Control": "no-store",
                # The token is a credential: the destination must not see it in a Referer.
                "Referrer-Policy": "no-referrer",
            },
        )

    async def livez(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        if self.sink.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not connected to Kafka yet\n")

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body, content_type = exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _publish(self, event: Event) -> bool:
        """Publish unless the same event went out within the window; True if it was published."""
        if self.recent.seen(event.event_id, self.monotonic()):
            return False
        await self.sink.publish(event)
        self.recent.remember(event.event_id, self.monotonic())
        return True

    async def _publish_tracking(self, event: Event) -> bool:
        try:
            return await asyncio.wait_for(self._publish(event), TRACKING_PUBLISH_TIMEOUT)
        except (SinkUnavailable, TimeoutError) as err:
            LINK_EVENTS_LOST.labels(event.type).inc()
            log.warning("tracking_event_lost", type=event.type, error=repr(err))
            return False


def safe_location(url: str | None) -> str:
    """The redirect target: the signed URL as it was signed, if it passes nudge.weburl's rule (an
    absolute http(s) URL with a host and no user name, no space, backslash, control or invisible
    character, so no CR or LF can reach the header); refuse otherwise.

    An ASCII URL is sent as it is: yarl's re-serialisation decodes `%2F` in a query, drops a
    default port and more, and a shop's signed or encoded query must reach the shop as the mail had
    it. Only what a header cannot carry as is changes: a non-ASCII host becomes IDNA (yarl's UTS 46,
    as a browser's), other non-ASCII characters are percent-encoded as UTF-8, as a browser does
    before it sends the URL.
    """
    if url is None:
        raise MalformedToken("the click token has no destination")
    problem = web_url_problem(url)
    if problem is not None:
        raise MalformedToken(f"the click token's destination is not a safe http(s) URL: {problem}")
    if url.isascii():
        return url
    try:
        idna_host = URL(url).raw_host
    except ValueError as err:  # not expected (the rule is stricter); a 400 all the same, not a 500
        raise MalformedToken("the click token's destination has no IDNA form") from err
    assert idna_host is not None  # noqa: S101 - the rule requires a host
    return _ascii_url(url, idna_host=idna_host)


def _ascii_url(url: str, *, idna_host: str) -> str:
    """`url` with its host replaced by `idna_host` when that host is not ASCII, and every other
    non-ASCII character percent-encoded as UTF-8; every ASCII character stays as it was."""
    netloc = urlsplit(url).netloc  # `host[:port]`: the rule refuses a user name
    # An IPv6 literal splits wrongly here, but it is ASCII, so it is left as it is.
    host, colon, port = netloc.partition(":")
    if not host.isascii():
        start = url.index(netloc)  # the first `//…` of an absolute URL is its authority
        url = url[:start] + idna_host + colon + port + url[start + len(netloc) :]
    return _NON_ASCII.sub(lambda run: quote(run.group(), safe=""), url)


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route and status, and stop browsers sniffing or leaking referrers."""
    route = _route_name(request)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        HTTP_REQUESTS.labels(route, str(exc.status)).inc()
        raise
    finally:
        HTTP_LATENCY.labels(route).observe(time.perf_counter() - started)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    HTTP_REQUESTS.labels(route, str(response.status)).inc()
    return response


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer the framework's errors (404, 405, 413, …) and any bug (500) with an error page.

    Each is the bilingual HTML page with the token pages' headers (no-store, CSP), instead of
    aiohttp's bare English text.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        page = ERROR_PAGES.get(exc.status, "invalid" if exc.status < 500 else "unavailable")
        kept = {name: exc.headers[name] for name in ("Allow", "Retry-After") if name in exc.headers}
        return _page(page, status=exc.status, headers=kept)
    except Exception as err:
        # No exc_info: the JSON log renders each frame's locals, and a handler's hold the token.
        log.error(
            "request_failed",
            route=_route_name(request),
            error=type(err).__name__,
            frames=[
                f"{frame.filename}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(err.__traceback__)
            ],
        )
        return _page("unavailable", status=500)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    name = resource.name if resource is not None else None
    return name or "other"


def _page(
    page: PageName,
    *,
    lang: Lang | None = None,
    token: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        text=render(page, lang=lang, token=token),
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def _refused(request: web.Request, err: TokenError) -> web.Response:
    _note_refusal(request, err)
    return _page("expired" if err.status == 410 else "invalid", status=err.status)


def _note_refusal(request: web.Request, err: Exception) -> None:
    # Never log the token: it is a bearer credential for someone's mailbox preferences.
    log.info("token_refused", route=_route_name(request), reason=type(err).__name__)


def _gif(*, status: int) -> web.Response:
    return web.Response(
        status=status,
        body=PIXEL,
        content_type="image/gif",
        headers={"Cache-Control": "no-store, private"},
    )


def _labels(link: VerifiedLink) -> tuple[str, str, str]:
    return link.ref.journey, link.ref.step, link.ref.variant or NO_VARIANT


def _ids(link: VerifiedLink) -> dict[str, str]:
    return {
        "user_id": link.ref.user_id,
        "command_id": link.ref.command_id,
        "journey": link.ref.journey,
        "step": link.ref.step,
    }
