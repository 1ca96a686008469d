"""`nudge web`: the link service as its own process, beside the stream processor.

It serves the URLs the sender puts in mail (`nudge.links.urls`): one-click unsubscribe, the open
pixel and the click redirect (routes in `nudge.links.routes`), and publishes what people did as
behaviour events to `<prefix>events`, where the processor reads them like any app's events.

Why a separate process and not a route in the processor's Faust web server: that server shares
the processor's event loop (and its one core, the GIL), so a burst of pixel fetches after a
campaign, or a hostile flood, would delay stream processing and timers. Here a flood costs this
process only; what reaches the processor is bounded by `nudge.links.guard` (one event per mail and
action per window), and the web service scales out on its own (it keeps no state that matters).

The HTTP server starts at once and `/livez` answers; `/readyz` turns 200 when the Kafka producer is
connected (it retries in the background while the broker is unreachable). SIGTERM or SIGINT stops
accepting requests, lets the ones in flight finish and flushes the producer.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import structlog
from aiohttp import web
from aiokafka.errors import KafkaError

from nudge import logs
from nudge.admin import ensure_topics
from nudge.commandline import FAILURE, USAGE, error, number, port
from nudge.links.guard import Limits, parse_networks
from nudge.links.keys import TokenKeys
from nudge.links.routes import SERVER_OPTIONS, build_app
from nudge.links.sink import KafkaEventSink
from nudge.metrics import describe_process
from nudge.settings import Settings
from nudge.topics import Topics

log = structlog.get_logger("nudge.links.web")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)"
    )
    parser.add_argument(
        "--port", type=port(), help="port to listen on (default: NUDGE_WEB_PORT, 8080)"
    )
    parser.add_argument(
        "--per-client-rate",
        type=number(float, at_least=0.0),
        default=defaults.per_client_rate,
        help="requests per second per client address on link routes; 0 turns it off",
    )
    parser.add_argument(
        "--per-client-burst",
        type=number(float, at_least=1.0),
        default=defaults.per_client_burst,
        help="requests a client may make at once before the rate applies",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy (address or network, repeatable) whose X-Forwarded-For names the "
        "client; without it, every client behind a proxy shares the proxy's rate limit",
    )
    parser.add_argument(
        "--max-in-flight",
        type=number(int, at_least=1),
        default=defaults.max_in_flight,
        help="link requests handled at once; beyond it requests get 503 at once",
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(fmt=settings.log_format, level=settings.log_level, service="web")
    limits = Limits(
        per_client_rate=args.per_client_rate,
        per_client_burst=args.per_client_burst,
        max_in_flight=args.max_in_flight,
        trusted_proxies=tuple(args.trusted_proxy),
    )
    try:
        parse_networks(limits.trusted_proxies)
    except ValueError as err:
        error("web", f"--trusted-proxy: {err}")
        return USAGE
    listen_port = args.port if args.port is not None else settings.web_port
    try:
        return asyncio.run(serve(settings, host=args.host, port=listen_port, limits=limits))
    except (OSError, OverflowError) as err:  # OverflowError: a port beyond 65535
        log.error("cannot_listen", host=args.host, port=listen_port, error=str(err))
        error(
            "web",
            f"cannot listen on {args.host}:{listen_port}: {err}",
            hint="choose another port with --port or NUDGE_WEB_PORT",
        )
        return FAILURE


async def serve(
    settings: Settings, *, host: str, port: int, limits: Limits, stop: asyncio.Event | None = None
) -> int:
    """Run until `stop` is set (or SIGTERM/SIGINT when no event is given); the exit status."""
    describe_process("web")
    topics = Topics(settings.topic_prefix)
    sink = KafkaEventSink(bootstrap_servers=settings.kafka_bootstrap_servers, topic=topics.events)
    app = build_app(
        sink=sink,
        keys=token_keys(settings),
        tracking=settings.tracking_enabled,
        limits=limits,
    )
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=10.0, **SERVER_OPTIONS)
    await runner.setup()
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    connecting = asyncio.create_task(_connect(settings, sink, topics.events))
    connecting.add_done_callback(lambda task: _stop_if_failed(task, stop))
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("web_listening", host=host, port=port, public_url=settings.public_base_url)
        if settings.token_secret_random:
            log.warning(
                "token_secret_unset",
                hint="NUDGE_TOKEN_SECRET is not set: links are checked against a random key of "
                "this process, so every link the sender made answers 403; set the same secret "
                "for the sender and `nudge web`",
            )
        await stop.wait()
        log.info("web_stopping")
    finally:
        connecting.cancel()
        await asyncio.wait([connecting])  # waits without re-raising the task's outcome
        await runner.cleanup()
        await sink.close()
    failed = not connecting.cancelled() and connecting.exception() is not None
    return 1 if failed else 0


def token_keys(settings: Settings) -> TokenKeys:
    """The secrets links are verified with: the current one, then the retired ones."""
    return TokenKeys(settings.token_secret, settings.token_secrets_previous)


async def _connect(settings: Settings, sink: KafkaEventSink, events_topic: str) -> None:
    """Create the events topic if needed, then connect the producer; retry while Kafka is down."""
    delay = 1.0
    while True:
        try:
            await ensure_topics(settings, [events_topic])
            break
        except (KafkaError, OSError) as err:
            log.warning("kafka_unavailable", error=str(err), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    await sink.connect()


def _stop_if_failed(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """A bug in connecting must not leave a live but never-ready process: log it and exit."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("kafka_connect_failed", error=repr(task.exception()))
    stop.set()
