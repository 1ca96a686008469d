"""The SMTP pool against a real aiosmtpd server: reuse, limits, refusals, drops, AUTH."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nudge.sender.classify import CONNECTION_ERROR, classify
from nudge.sender.pool import SmtpPool
from nudge.sender.sink import Faults, SmtpSink
from nudge.settings import SmtpSettings

pytestmark = pytest.mark.integration

MESSAGE = b"From: a@example.com\r\nTo: b@example.jp\r\nSubject: hi\r\n\r\nhello\r\n"


async def nothing() -> None:
    return None


def pool_for(sink: SmtpSink, **options: object) -> SmtpPool:
    smtp = SmtpSettings(
        host="127.0.0.1",
        port=sink.port,
        timeout=3.0,
        username=options.pop("username", None),  # type: ignore[arg-type]
        password=options.pop("password", None),  # type: ignore[arg-type]
    )
    return SmtpPool(smtp, **options)  # type: ignore[arg-type]


async def test_connections_are_bounded_and_reused_up_to_the_limit(sink: SmtpSink) -> None:
    """40 concurrent sends use at most 4 connections, each for at most 5 messages."""
    pool = pool_for(sink, max_connections=4, messages_per_connection=5)
    replies = await asyncio.gather(
        *(
            pool.send("a@example.com", f"u{i}@example.jp", MESSAGE, before_data=nothing)
            for i in range(40)
        )
    )
    await pool.close()
    assert {r.code for r in replies} == {250}
    assert sink.count == 40
    assert sink.connections == 8  # 40 messages / 5 per connection


async def test_refused_recipient_is_a_reply_and_the_connection_stays_usable(
    sink: SmtpSink,
) -> None:
    """550 5.1.1 at RCPT comes back as a bounce; the same connection then delivers."""
    sink.faults.bad_addresses.add("gone@example.jp")
    pool = pool_for(sink, max_connections=1)
    refused = await pool.send("a@example.com", "gone@example.jp", MESSAGE, before_data=nothing)
    accepted = await pool.send("a@example.com", "ok@example.jp", MESSAGE, before_data=nothing)
    await pool.close()
    assert (refused.code, refused.stage, classify(refused).action) == (550, "rcpt", "bounce")
    assert accepted.code == 250
    assert sink.connections == 1


async def test_before_data_runs_only_after_rcpt_was_accepted(sink: SmtpSink) -> None:
    """The ledger hook is not called for a refused recipient, and is called before DATA."""
    sink.faults.bad_addresses.add("gone@example.jp")
    calls: list[int] = []

    async def hook() -> None:
        calls.append(sink.count)

    pool = pool_for(sink)
    await pool.send("a@example.com", "gone@example.jp", MESSAGE, before_data=hook)
    await pool.send("a@example.com", "ok@example.jp", MESSAGE, before_data=hook)
    await pool.close()
    assert calls == [0]  # once, before the one accepted message was stored


async def test_a_dropped_connection_is_retryable_and_replaced(tmp_path: Path) -> None:
    """421 + disconnect is a retry; the pool opens a new connection for the next message."""
    sink = SmtpSink(tmp_path, faults=Faults(drop_ratio=1.0))
    await sink.start()
    try:
        pool = pool_for(sink, max_connections=1)
        dropped = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
        sink.faults.drop_ratio = 0.0
        accepted = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
        await pool.close()
    finally:
        await sink.stop()
    assert classify(dropped).action == "retry"
    assert accepted.code == 250
    assert sink.connections == 2


async def test_a_server_that_is_down_gives_a_connection_error(sink: SmtpSink) -> None:
    """Connection refused is a reply with code −1 at stage connect, classified retry."""
    await sink.down()
    pool = pool_for(sink)
    reply = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
    await pool.close()
    assert (reply.code, reply.stage, classify(reply).action) == (
        CONNECTION_ERROR,
        "connect",
        "retry",
    )


async def test_an_idle_connection_closed_by_the_server_is_replaced_silently(
    sink: SmtpSink,
) -> None:
    """A pooled connection the server cut while idle costs no retry: a fresh one is used."""
    pool = pool_for(sink, max_connections=1)
    first = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
    await sink.down()
    await sink.up()
    second = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
    await pool.close()
    assert (first.code, second.code) == (250, 250)


@pytest.mark.parametrize(("password", "code"), [("s3cret", 250), ("wrong", CONNECTION_ERROR)])
async def test_auth_from_smtp_url(tmp_path: Path, password: str, code: int) -> None:
    """Credentials from SMTP_URL log in; wrong ones fail the connection (retried, logged)."""
    sink = SmtpSink(tmp_path, credentials=("nudge", "s3cret"))
    await sink.start()
    try:
        url = f"smtp://nudge:{password}@127.0.0.1:{sink.port}?timeout=2"
        pool = SmtpPool(SmtpSettings.from_url(url))
        reply = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
        await pool.close()
    finally:
        await sink.stop()
    assert reply.code == code
    assert sink.count == (1 if code == 250 else 0)


async def test_a_reply_overdue_by_the_timeout_cuts_the_connection(tmp_path: Path) -> None:
    """A server that does not answer within `timeout=` is a retry at the stage it hung in; the
    connection is closed (not left to answer late), and the next message gets a fresh one."""
    sink = SmtpSink(tmp_path, faults=Faults(delay=3.0))
    await sink.start()
    try:
        pool = SmtpPool(
            SmtpSettings(host="127.0.0.1", port=sink.port, timeout=0.3), max_connections=1
        )
        started = asyncio.get_running_loop().time()
        hung = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
        waited = asyncio.get_running_loop().time() - started
        sink.faults.delay = 0.0
        accepted = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
        await pool.close()
    finally:
        await sink.stop()
    assert (hung.code, hung.stage, classify(hung).action) == (CONNECTION_ERROR, "data", "retry")
    assert hung.message.startswith("SMTPReadTimeoutError")  # said as a timeout, not a drop
    assert 0.3 <= waited < 2.0  # DATA is two replies: at most twice the timeout, not the 3 s
    assert accepted.code == 250
    assert sink.connections == 2


async def test_replies_within_the_timeout_keep_the_connection(tmp_path: Path) -> None:
    """Slow replies within `timeout=` (each message takes most of it), and an idle spell longer
    than it between messages, never cut a connection: one connection carries them all."""
    sink = SmtpSink(tmp_path, faults=Faults(delay=0.2))
    await sink.start()
    try:
        pool = SmtpPool(
            SmtpSettings(host="127.0.0.1", port=sink.port, timeout=0.3), max_connections=1
        )
        replies = [
            await pool.send("a@example.com", f"u{i}@example.jp", MESSAGE, before_data=nothing)
            for i in range(4)
        ]
        await asyncio.sleep(0.8)  # idle for more than the timeout
        replies.append(
            await pool.send("a@example.com", "late@example.jp", MESSAGE, before_data=nothing)
        )
        await pool.close()
    finally:
        await sink.stop()
    assert [r.code for r in replies] == [250] * 5
    assert sink.connections == 1


async def test_data_and_the_reply_to_the_message_share_twice_the_timeout(tmp_path: Path) -> None:
    """The deadline covers DATA's two replies together (354 at once, then the verdict on the
    message): with `timeout=0.3`, a server that thinks 0.4 s over a message is waited for."""
    sink = SmtpSink(tmp_path, faults=Faults(delay=0.4))
    await sink.start()
    try:
        pool = SmtpPool(
            SmtpSettings(host="127.0.0.1", port=sink.port, timeout=0.3), max_connections=1
        )
        reply = await pool.send("a@example.com", "x@example.jp", MESSAGE, before_data=nothing)
        await pool.close()
    finally:
        await sink.stop()
    assert (reply.code, reply.stage) == (250, "data")
    assert sink.count == 1
