"""`nudge smtp-sink`: a local SMTP server (aiosmtpd) that stores what it receives and misbehaves.

Each accepted message is written to `--maildir` as `<n>-<id>.eml` and summarised on one line
(decoded subject, recipient). `SmtpSink` is reusable in-process by tests, the demo, the chaos
suite and the benchmark, with real fault injection through `Faults`: answer 451 to the first N
messages or to a share of them, 421 and drop the connection, refuse chosen addresses with
`550 5.1.1`, go down (stop listening, cut connections) and come back up on the same port.
Files are not fsynced unless asked: a sink that syncs every mail measures the disk, not Nudge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import logging
import os
import random
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult

from nudge.commandline import FAILURE, USAGE, error, number, port, ratio, reason
from nudge.settings import Settings


@dataclass(slots=True)
class Faults:
    """What the sink does wrong, changeable while it runs."""

    fail_first: int = 0  # answer the first N messages with `temp_reply` at DATA
    fail_ratio: float = 0.0  # and this share of the rest
    temp_reply: str = "451 4.3.0 Temporary local problem, please try again later"
    drop_ratio: float = 0.0  # answer 421 and close the connection for this share
    bad_addresses: set[str] = field(default_factory=set)  # RCPT → 550 5.1.1
    delay: float = 0.0  # seconds to think before answering DATA (a slow server)
    seed: int | None = None
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)  # noqa: S311 - fault injection, not security

    def roll(self, ratio: float) -> bool:
        return ratio > 0 and self._random.random() < ratio


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One accepted message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    path: Path | None

    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        if not isinstance(parsed, email.message.EmailMessage):  # pragma: no cover
            raise TypeError("the default policy always yields EmailMessage")
        return parsed


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.lower() in self.sink.faults.bad_addresses:
            self.sink.refused += 1
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        faults = sink.faults
        sink.attempts += 1
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        if faults.fail_first > 0:
            faults.fail_first -= 1
            sink.deferred += 1
            return faults.temp_reply
        if faults.roll(faults.fail_ratio):
            sink.deferred += 1
            return faults.temp_reply
        if faults.roll(faults.drop_ratio):
            sink.deferred += 1
            server.transport.close()
            return "421 4.4.2 Closing connection"
        return sink.store(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content)


class _Session(SMTP):
    """aiosmtpd's protocol, forgetting itself in the sink when its connection ends."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink

    def connection_lost(self, error: Exception | None) -> None:
        self._sink._sessions.discard(self)
        super().connection_lost(error)


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.expected = (username.encode(), password.encode())

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        login = getattr(data, "login", None)
        password = getattr(data, "password", None)
        return AuthResult(success=(login, password) == self.expected)


class SmtpSink:
    """An aiosmtpd server on loopback in the current event loop."""

    def __init__(
        self,
        maildir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        fsync: bool = False,
        keep: bool = True,
        echo: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.maildir = maildir
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.fsync = fsync
        self.keep = keep  # keep messages in memory (tests); the benchmark turns it off
        self.echo = echo
        self.credentials = credentials  # require AUTH (PLAIN/LOGIN) with this user and password
        self.connections = 0
        self.received: list[Received] = []
        self.count = 0
        self.attempts = 0
        self.deferred = 0
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[SMTP] = set()
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def start(self) -> None:
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        auth: dict[str, Any] = {}
        if self.credentials is not None:
            auth = {
                "authenticator": _Authenticator(*self.credentials),
                "auth_required": True,
                "auth_require_tls": False,  # loopback tests; real servers must insist on TLS
            }

        def factory() -> SMTP:
            self.connections += 1
            with warnings.catch_warnings():
                # aiosmtpd warns that AUTH without TLS is unsafe: true, and meant (loopback).
                warnings.simplefilter("ignore")
                session = _Session(
                    self, handler, hostname="nudge-sink", ident="nudge-sink", loop=loop, **auth
                )
            self._sessions.add(session)
            return session

        self._server = await loop.create_server(factory, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open connection (also how `down()` works)."""
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                transport = getattr(session, "transport", None)
                if transport is not None:
                    transport.close()
            self._sessions.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def down(self) -> None:
        await self.stop()

    async def up(self) -> None:
        await self.start()

    def store(self, mail_from: str, rcpt_tos: tuple[str, ...], content: bytes) -> str:
        self.count += 1
        path = None
        if self.maildir is not None:
            path = self.maildir / f"{self.count:06d}-{os.getpid()}.eml"
            with path.open("wb") as handle:
                handle.write(content)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
        received = Received(mail_from=mail_from, rcpt_tos=rcpt_tos, raw=content, path=path)
        if self.keep:
            self.received.append(received)
        if self.echo:
            print(summary(received), flush=True)
        asyncio.get_running_loop().create_task(self._notify())
        return f"250 2.0.0 OK queued as {self.count}"

    async def _notify(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()

    async def wait_for(self, count: int) -> list[Received]:
        """Wait until at least `count` messages arrived (wrap in `asyncio.timeout`)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.count >= count)
        return self.received


def summary(received: Received) -> str:
    message = received.message()
    where = f"  → {received.path}" if received.path else ""
    return f"mail to {', '.join(received.rcpt_tos)}: {message['Subject']}{where}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=port(zero="any free port"), default=2525, help="port on 127.0.0.1"
    )
    parser.add_argument(
        "--maildir", type=Path, default=Path(".cache/maildir"), help="where .eml files go"
    )
    parser.add_argument("--fsync", action="store_true", help="fsync every stored message")
    parser.add_argument("--quiet", action="store_true", help="no line per message")
    parser.add_argument(
        "--fail-ratio", type=ratio, default=0.0, help="share of messages answered 451, 0 to 1"
    )
    parser.add_argument(
        "--fail-first",
        type=number(int, at_least=0),
        default=0,
        metavar="N",
        help="answer the first N messages 451, as a greylisting server does",
    )
    parser.add_argument(
        "--reject", action="append", default=[], metavar="ADDRESS", help="answer 550 5.1.1"
    )


def main(args: argparse.Namespace, settings: Settings) -> int:
    # aiosmtpd logs every SMTP command at INFO on "mail.log"; one summary line per mail is ours.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        # Here, not in `start`: a maildir that cannot be made is not a port that cannot be bound.
        args.maildir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        error("smtp-sink", f"cannot create --maildir {args.maildir}: {reason(err, args.maildir)}")
        return USAGE
    faults = Faults(
        fail_ratio=args.fail_ratio,
        fail_first=args.fail_first,
        bad_addresses={a.lower() for a in args.reject},
    )
    sink = SmtpSink(
        args.maildir,
        port=args.port,
        faults=faults,
        fsync=args.fsync,
        keep=False,
        echo=not args.quiet,
    )

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sink.start()
        print(f"smtp-sink listening on {sink.url}, storing mail in {args.maildir}", flush=True)
        await stop.wait()
        await sink.stop()
        print(f"smtp-sink stopped after {sink.count} messages", flush=True)

    try:
        asyncio.run(serve())
    except OSError as err:
        error(
            "smtp-sink",
            f"cannot listen on 127.0.0.1:{args.port}: {err.strerror or err}",
            hint="choose another --port",
        )
        return FAILURE
    return 0
