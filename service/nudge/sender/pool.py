"""The SMTP seam: a `Mailer` protocol, a pooled aiosmtplib implementation, and a recording fake.

aiosmtplib serialises one transaction per connection and has no pool, so this module keeps up to
`max_connections` open connections, lends each to one transaction at a time, reuses it for up to
`messages_per_connection` messages, and closes it after any connection error or a 421.

A transaction is driven command by command (MAIL, RCPT, then the caller's `before_data` hook,
then DATA) rather than with `sendmail`, so a caller can make sure of something after the
recipient was accepted and before the message is handed over (the sender checks there that its
ledger entry is durable). With one recipient per transaction, a per-recipient refusal is the RCPT
reply itself (what `sendmail` would report in its refusals dict), classified like any other.

Failures never raise: they come back as a `Reply` (code −1 for "no reply"), with the stage.

Command timeouts (`SMTP_URL`'s `timeout=`) are kept by the pool, not by aiosmtplib: each
connection has a deadline for the reply it waits for and one timer that checks it, re-armed only
when it fires early. aiosmtplib's own per-command timeout is an `asyncio.wait_for` with a timer
per reply (four per mail, each pushed on and cancelled off the event loop's heap): the pool spent
14 % of its instructions there (docs/sender.md, Performance). Connecting, EHLO, STARTTLS, AUTH,
RSET and QUIT keep aiosmtplib's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from nudge import metrics
from nudge.sender.classify import CONNECTION_ERROR, Reply
from nudge.settings import SmtpSettings

BeforeData = Callable[[], Awaitable[None]]
# A timer may fire this much before its time (the loop's clock resolution): that is on time.
_TIMER_SLACK = 0.001
# A plain dot-atom address: `<address>` is exactly what aiosmtplib's `quote_address` would make of
# it, so MAIL and RCPT can skip its `email.utils.parseaddr` (≈ 10 % of an SMTP transaction's CPU).
_PLAIN_ADDRESS = re.compile(
    rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    rb"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)


class Mailer(Protocol):
    """Delivers one message to one recipient and reports the server's reply.

    `before_data` is awaited after RCPT was accepted, right before DATA.
    """

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        raw: bytes,
        *,
        before_data: BeforeData,
    ) -> Reply: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Connection:
    client: aiosmtplib.SMTP
    sent: int = 0
    # When the reply now awaited is overdue (event loop time; inf while no command waits).
    deadline: float = math.inf
    # The timer that enforces `deadline`: armed at the first command, re-armed when it fires
    # before a later deadline, dropped when it fires while no command waits.
    timer: asyncio.TimerHandle | None = None
    timed_out: bool = False


class SmtpPool:
    """A bounded pool of aiosmtplib connections to one SMTP server (`SMTP_URL`)."""

    def __init__(
        self,
        smtp: SmtpSettings,
        *,
        max_connections: int = 8,
        messages_per_connection: int = 100,
        local_hostname: str = "localhost",
    ) -> None:
        self.smtp = smtp
        self.messages_per_connection = max(1, messages_per_connection)
        self.local_hostname = local_hostname
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._idle: list[_Connection] = []
        self._open = 0

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        raw: bytes,
        *,
        before_data: BeforeData,
    ) -> Reply:
        async with self._slots:
            metrics.SMTP_POOL_IN_USE.inc()
            started = time.perf_counter()
            try:
                for attempt in (1, 2):
                    conn = self._idle.pop() if self._idle and attempt == 1 else None
                    reused = conn is not None
                    if conn is None:
                        conn, failure = await self._connect()
                        if conn is None:
                            return failure
                    reply, keep = await self._transaction(
                        conn, envelope_from, recipient, raw, before_data
                    )
                    if keep:
                        conn.sent += 1
                        await self._release(conn)
                    else:
                        self._discard(conn)
                    # A pooled connection the server closed while idle fails at MAIL with
                    # nothing sent: try once more on a fresh one instead of a durable retry.
                    stale = reused and reply.code == CONNECTION_ERROR and reply.stage == "mail"
                    if stale and attempt == 1:
                        continue
                    return reply
                raise AssertionError("unreachable")  # pragma: no cover
            finally:
                metrics.SMTP_POOL_IN_USE.dec()
                metrics.SEND_LATENCY.observe(time.perf_counter() - started)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.client.quit()
            self._discard(conn)

    async def _connect(self) -> tuple[_Connection | None, Reply]:
        smtp = self.smtp
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls if not smtp.use_tls else False,
            validate_certs=smtp.verify_certificates,
            timeout=smtp.timeout,
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as err:
            client.close()
            return None, Reply(code=CONNECTION_ERROR, message=_describe(err), stage="connect")
        self._open += 1
        metrics.SMTP_POOL_OPEN.set(self._open)
        return _Connection(client=client), Reply(code=220, stage="connect")

    async def _transaction(
        self,
        conn: _Connection,
        envelope_from: str,
        recipient: str,
        raw: bytes,
        before_data: BeforeData,
    ) -> tuple[Reply, bool]:
        """Run MAIL, RCPT, DATA; return the reply and whether the connection stays usable."""
        client = conn.client
        timeout = self.smtp.timeout
        stage = "mail"
        try:
            self._await_reply(conn, timeout)
            await _mail(client, envelope_from)
            stage = "rcpt"
            self._await_reply(conn, timeout)
            await _rcpt(client, recipient)
            stage = "data"
            conn.deadline = math.inf  # the caller's hook is not the server's time
            try:
                await before_data()
            except BaseException:
                await _reset(client)
                raise
            # DATA is two replies (354, then the one to the message): twice the time, as
            # aiosmtplib's timeout per reply allowed.
            self._await_reply(conn, 2 * timeout)
            response = await client.data(raw, timeout=None)
            return Reply(code=response.code, message=response.message, stage="data"), True
        except aiosmtplib.SMTPResponseException as err:
            if err.code == 421:  # the server is closing this connection
                return Reply(code=err.code, message=err.message, stage=stage), False
            conn.deadline = math.inf
            return Reply(code=err.code, message=err.message, stage=stage), await _reset(client)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as err:
            message = _describe(err)
            if conn.timed_out:
                message = f"SMTPReadTimeoutError: no reply at {stage} within {timeout:g} s"
            return Reply(code=CONNECTION_ERROR, message=message, stage=stage), False
        finally:
            conn.deadline = math.inf

    def _await_reply(self, conn: _Connection, timeout: float) -> None:
        """Give the command about to be sent on `conn` `timeout` seconds to be answered."""
        loop = asyncio.get_running_loop()
        conn.deadline = loop.time() + timeout
        if conn.timer is None:
            conn.timer = loop.call_at(conn.deadline, self._check_deadline, conn)

    def _check_deadline(self, conn: _Connection) -> None:
        """The connection's timer: cut an overdue connection, or wait for the next deadline."""
        conn.timer = None
        if conn.deadline == math.inf:  # idle now: the next command arms a timer again
            return
        loop = asyncio.get_running_loop()
        if conn.deadline - loop.time() > _TIMER_SLACK:  # a later command's deadline: wait
            conn.timer = loop.call_at(conn.deadline, self._check_deadline, conn)
            return
        # Overdue: abort (close() would wait to flush a message the server is not reading), so
        # the pending reply fails at once as a lost connection; the transaction reports it.
        conn.timed_out = True
        transport = conn.client.transport
        if isinstance(transport, asyncio.WriteTransport):  # plain and TLS transports are
            transport.abort()
        elif transport is not None:
            transport.close()

    async def _release(self, conn: _Connection) -> None:
        # A reply that beat its timer by a hair still counts, but the timer has cut the line.
        usable = conn.client.is_connected and not conn.timed_out
        if conn.sent < self.messages_per_connection and usable:
            self._idle.append(conn)
            return
        with contextlib.suppress(Exception):
            await conn.client.quit()
        self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        conn.client.close()
        self._open -= 1
        metrics.SMTP_POOL_OPEN.set(self._open)


def _path(address: str) -> bytes | None:
    """`<address>` for a plain ASCII address; None when aiosmtplib should parse it itself."""
    if not address.isascii():
        return None
    raw = address.encode("ascii")
    return b"<" + raw + b">" if _PLAIN_ADDRESS.fullmatch(raw) else None


@functools.lru_cache(maxsize=16)
def _sender_path(address: str) -> bytes | None:
    """`_path` of the envelope sender: one configured address, checked once."""
    return _path(address)


async def _mail(client: aiosmtplib.SMTP, sender: str) -> None:
    """`client.mail(sender)`, minus the address parsing for a plain address; no timeout of
    aiosmtplib's (the caller's deadline applies)."""
    path = _sender_path(sender)
    if path is None or client.is_ehlo_or_helo_needed:
        await client.mail(sender, timeout=None)
        return
    response = await client.execute_command(b"MAIL", b"FROM:" + path, timeout=None)
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def _rcpt(client: aiosmtplib.SMTP, recipient: str) -> None:
    """`client.rcpt(recipient)`, minus the address parsing for a plain address; no timeout of
    aiosmtplib's (the caller's deadline applies)."""
    path = _path(recipient)
    if path is None or client.is_ehlo_or_helo_needed:
        await client.rcpt(recipient, timeout=None)
        return
    response = await client.execute_command(b"RCPT", b"TO:" + path, timeout=None)
    if response.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a refused transaction; False when the connection is no longer usable."""
    try:
        await client.rset()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        return False
    return client.is_connected


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:300]


@dataclass(slots=True)
class RecordingMailer:
    """A fake `Mailer` for unit tests: records messages and answers from a script of replies."""

    replies: list[Reply] = field(default_factory=list)
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def send(
        self,
        envelope_from: str,
        recipient: str,
        raw: bytes,
        *,
        before_data: BeforeData,
    ) -> Reply:
        reply = self.replies.pop(0) if self.replies else Reply(code=250, message="2.0.0 OK")
        if reply.stage == "data":
            await before_data()
        if 200 <= reply.code < 300:
            self.sent.append((envelope_from, recipient, raw))
        return reply

    async def close(self) -> None:
        return None
