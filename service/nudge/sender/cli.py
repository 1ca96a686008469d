"""`nudge sender`: run the sender until SIGTERM/SIGINT, with /metrics, /livez and /readyz.

Exit codes: 0 after a clean drain, 1 when it stopped on an error (Kafka unreachable, a bug) —
uncommitted commands are then redelivered to whichever sender runs next; 2 when the journeys file
(`NUDGE_JOURNEYS`, read for its quiet hours and graces) is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import structlog
from aiohttp import web
from aiokafka.errors import KafkaError

from nudge import logs, metrics
from nudge.commandline import FAILURE, USAGE, error, port
from nudge.errors import ConfigError
from nudge.journeys.loader import load_journeys
from nudge.sender.compose import sender_identity
from nudge.sender.pool import SmtpPool
from nudge.sender.service import SenderService
from nudge.sender.timeliness import MarketingWindow
from nudge.settings import Settings

log = structlog.get_logger("nudge.sender")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address for the HTTP endpoints (0.0.0.0 in a container)",
    )
    parser.add_argument(
        "--port",
        type=port(zero="none"),
        default=None,
        help="HTTP port for /metrics, /livez, /readyz (default: NUDGE_SENDER_PORT or 9465)",
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(fmt=settings.log_format, level=settings.log_level, service="sender")
    http_port = settings.sender_metrics_port if args.port is None else args.port
    try:
        # The processor's quiet hours and graces, for marketing mail that waited in the sender.
        window = MarketingWindow.from_journeys(load_journeys(settings.journeys_path))
    except ConfigError as err:
        log.error("sender.cannot_start", error=str(err))
        error("sender", f"cannot start: {err}")
        return USAGE
    return asyncio.run(run(settings, http_port=http_port, http_host=args.host, window=window))


def make_pool(settings: Settings) -> SmtpPool:
    domain = sender_identity(settings.mail_from)[2]
    return SmtpPool(
        settings.smtp,
        max_connections=settings.smtp_max_connections,
        messages_per_connection=settings.smtp_messages_per_connection,
        local_hostname=domain,
    )


async def run(
    settings: Settings,
    *,
    http_port: int,
    http_host: str = "127.0.0.1",
    window: MarketingWindow | None = None,
) -> int:
    """The whole process: signals, HTTP endpoints, the service; returns the exit code."""
    metrics.describe_process("sender")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    service = SenderService(settings, mailer=make_pool(settings), window=window)
    metrics.report_readiness("sender", lambda: service.ready)
    try:
        runner = await _start_http(service, http_host, http_port) if http_port else None
    except (OSError, OverflowError) as err:  # OverflowError: a port beyond 65535
        log.error("sender.cannot_listen", host=http_host, port=http_port, error=str(err))
        error(
            "sender",
            f"cannot listen on {http_host}:{http_port}: {err}",
            hint="choose another port with --port or NUDGE_SENDER_PORT",
        )
        return FAILURE
    log.info(
        "sender.starting",
        smtp=f"{settings.smtp.host}:{settings.smtp.port}",
        topic_prefix=settings.topic_prefix,
        http_port=http_port,
    )
    if settings.token_secret_random:
        log.warning(
            "sender.token_secret_unset",
            hint="NUDGE_TOKEN_SECRET is not set: this process signs its links with a random key "
            "that `nudge web` cannot verify (every unsubscribe link answers 403); set the same "
            "secret for the sender and `nudge web`",
        )
    warn_if_sender_identity_incomplete(settings)
    if not settings.public_base_url.startswith("https://"):
        log.warning(
            "sender.links_not_https",
            public_base_url=settings.public_base_url,
            hint="RFC 8058 one-click unsubscribe needs an https URL: set NUDGE_PUBLIC_URL",
        )
    try:
        return await service.run(stop)
    except KafkaError as err:
        return logs.kafka_unreachable("sender", settings.kafka_bootstrap_servers, err, stopped=True)
    finally:
        if runner is not None:
            await runner.cleanup()


def warn_if_sender_identity_incomplete(settings: Settings) -> None:
    """Log `sender.sender_identity_incomplete` naming NUDGE_SENDER_ADDRESS / _CONTACT if unset.

    A warning, not a refusal to start: a laptop demo has no postal address to give, and the
    footer simply leaves out what is not set.
    """
    unset = [
        name
        for name, value in (
            ("NUDGE_SENDER_ADDRESS", settings.sender_address),
            ("NUDGE_SENDER_CONTACT", settings.sender_contact),
        )
        if not value
    ]
    if unset:
        log.warning(
            "sender.sender_identity_incomplete",
            unset=unset,
            hint=f"{' and '.join(unset)} not set: marketing mail to Japan must show the sender's "
            "postal address and a contact for complaints and enquiries (Act on Specified "
            "Electronic Mail, Article 4); set them for a shop that mails Japanese customers "
            "(docs/sender.md)",
        )


async def _start_http(service: SenderService, host: str, port: int) -> web.AppRunner:
    async def metrics_view(_: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if service.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.add_routes(
        [web.get("/metrics", metrics_view), web.get("/livez", livez), web.get("/readyz", readyz)]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
