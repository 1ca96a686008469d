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
"""

from __future__ import annotations

import asyncio
import contextlib
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
        stage = "mail"
        try:
            await _mail(client, envelope_from)
            stage = "rcpt"
            await _rcpt(client, recipient)
            stage = "data"
            try:
                await before_data()
            except BaseException:
                await _reset(client)
                raise
            response = await client.data(raw)
            return Reply(code=response.code, message=response.message, stage="data"), True
        except aiosmtplib.SMTPResponseException as err:
            if err.code == 421:  # the server is closing this connection
                return Reply(code=err.code, message=err.message, stage=stage), False
            return Reply(code=err.code, message=err.message, stage=stage), await _reset(client)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as err:
            return Reply(code=CONNECTION_ERROR, message=_describe(err), stage=stage), False

    async def _release(self, conn: _Connection) -> None:
        if conn.sent < self.messages_per_connection and conn.client.is_connected:
            self._idle.append(conn)
            return
        with contextlib.suppress(Exception):
            await conn.client.quit()
        self._discard(conn)

    def _discard(self, conn: _Connection) -> None:
        conn.client.close()
        self._open -= 1
        metrics.SMTP_POOL_OPEN.set(self._open)


def _path(address: str) -> bytes | None:
    """`<address>` for a plain ASCII address; None when aiosmtplib should parse it itself."""
    if not address.isascii():
        return None
    raw = address.encode("ascii")
    return b"<" + raw + b">" if _PLAIN_ADDRESS.fullmatch(raw) else None


async def _mail(client: aiosmtplib.SMTP, sender: str) -> None:
    """`client.mail(sender)`, minus the address parsing for a plain address."""
    path = _path(sender)
    if path is None or client.is_ehlo_or_helo_needed:
        await client.mail(sender)
        return
    response = await client.execute_command(b"MAIL", b"FROM:" + path)
    if response.code != 250:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)


async def _rcpt(client: aiosmtplib.SMTP, recipient: str) -> None:
    """`client.rcpt(recipient)`, minus the address parsing for a plain address."""
    path = _path(recipient)
    if path is None or client.is_ehlo_or_helo_needed:
        await client.rcpt(recipient)
        return
    response = await client.execute_command(b"RCPT", b"TO:" + path)
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
