"""The sender end to end: real Kafka in, real SMTP server out, outcomes on the deliveries topic."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from email.header import decode_header, make_header

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from senderkit import Cluster, daytime_now, make_command

from nudge.codec import decode_delivery
from nudge.deadletter import read_headers
from nudge.policy import CONTACT_POLICY_TOPIC, ContactPolicy, encode_policy
from nudge.sender.render import sample_variables
from nudge.sender.sink import SmtpSink
from nudge.settings import Settings
from nudge.topics import Topics

pytestmark = pytest.mark.integration


async def test_japanese_order_confirmation_arrives_with_spec_headers_and_parts(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """The received message parses and shows the Japanese subject, both parts and §5 headers."""
    command = make_command()
    start_sender()  # type: ignore[operator]
    await cluster.send(command)
    async with asyncio.timeout(30):
        received = await sink.wait_for(1)
    message = received[0].message()
    assert (
        message["Subject"]
        == f"ご注文ありがとうございます（ご注文番号：{command.variables['order_id']}）"
    )
    assert message["To"].addresses[0].display_name == "山田 花子"
    assert message["To"].addresses[0].addr_spec == command.to
    assert message["X-Nudge-Idempotency-Key"] == command.idempotency_key
    assert message["X-Nudge-Journey"] == "order_confirmation"
    assert message["X-Nudge-Step"] == "confirmation"
    assert message["Message-ID"]
    assert message["Date"]
    assert message["From"]
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content_charset() == "utf-8"
    assert "山田 花子 様" in text.get_content()
    assert "急須セット" in html.get_content()
    assert "List-Unsubscribe" not in message  # transactional
    raw_subject = received[0].raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\n")[0]
    assert raw_subject.startswith(b"=?utf-8?")  # RFC 2047, not raw 8-bit
    (record,) = await cluster.deliveries(1)
    assert record.status == "sent"
    assert record.smtp_code == 250
    assert record.message_id == message["Message-ID"]
    assert (record.journey, record.step, record.kind, record.to) == (
        "order_confirmation",
        "confirmation",
        "transactional",
        command.to,
    )


async def test_english_marketing_mail_carries_one_click_unsubscribe(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """Marketing mail has List-Unsubscribe (https, signed) + One-Click and a visible link."""
    command = make_command(
        journey="cart_abandonment",
        step="reminder_1",
        kind="marketing",
        template="cart_reminder_1",
        locale="en-US",
        created_at=daytime_now(),
        variables={
            "name": None,
            "items": [{"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 1}],
            "cart_total": 4800,
            "currency": "JPY",
        },
    )
    start_sender()  # type: ignore[operator]
    await cluster.send(command)
    async with asyncio.timeout(30):
        received = await sink.wait_for(1)
    message = received[0].message()
    assert message["Subject"] == "You left something in your cart"
    unsubscribe = message["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://nudge.example.com/unsubscribe?token=")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Hello there," in text
    assert unsubscribe.strip("<>") in text
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert unsubscribe.strip("<>") in html
    assert "/o/" in html  # open pixel (tracking on by default)


async def test_crlf_in_name_cannot_add_a_header_and_bad_template_is_dead_lettered(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """A CRLF in a name and a missing variable go to the DLT; the next command still flows."""
    injected = make_command(
        variables={**make_command().variables, "name": "Hana\r\nBcc: victim@example.org"}
    )
    missing = make_command(variables={"name": "x", "items": []})  # no order_id, total, currency
    good = make_command()
    start_sender()  # type: ignore[operator]
    await cluster.send(injected, missing, good, raw=b"{not json")
    async with asyncio.timeout(30):
        received = await sink.wait_for(1)
    dlt = await cluster.read(Topics.dead_letter(cluster.topics.send_commands), 3)
    reasons = {read_headers(r.headers)["nudge-error-reason"] for r in dlt}
    assert reasons == {"unsafe_header", "missing_variable", "malformed_json"}
    messages = {
        read_headers(r.headers)["nudge-error-reason"]: read_headers(r.headers)[
            "nudge-error-message"
        ]
        for r in dlt
    }
    assert "order_confirmation" in messages["missing_variable"]
    assert "'order_id'" in messages["missing_variable"]
    await cluster.handled()
    assert len(sink.received) == 1
    assert received[0].message()["X-Nudge-Idempotency-Key"] == good.idempotency_key
    assert b"Bcc" not in received[0].raw
    records = await cluster.deliveries(3)
    by_key = {r.idempotency_key: r for r in records}
    assert by_key[injected.idempotency_key].status == "failed"
    assert by_key[injected.idempotency_key].reason == "unsafe_header"
    assert by_key[missing.idempotency_key].status == "failed"
    assert by_key[good.idempotency_key].status == "sent"


async def test_redelivered_command_is_sent_once(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """The same command delivered twice (and again later) produces one mail and `duplicate`s."""
    command = make_command()
    start_sender()  # type: ignore[operator]
    await cluster.send(command, command)
    async with asyncio.timeout(30):
        await sink.wait_for(1)
    await cluster.send(command)
    records = await cluster.deliveries(3)
    assert sorted(r.status for r in records) == ["duplicate", "duplicate", "sent"]
    assert len(sink.received) == 1


async def test_451_then_250_delivers_once_via_the_retry_topic(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """A 451 reply defers the mail; the durable retry delivers it exactly once."""
    sink.faults.fail_first = 1
    command = make_command()
    start_sender()  # type: ignore[operator]
    await cluster.send(command)
    async with asyncio.timeout(30):
        await sink.wait_for(1)
    records = await cluster.deliveries(2)
    assert [(r.status, r.attempt, r.smtp_code) for r in records] == [
        ("deferred", 1, 451),
        ("sent", 2, 250),
    ]
    assert records[0].smtp_enhanced_code == "4.3.0"
    await cluster.handled()
    assert len(sink.received) == 1


async def test_550_5_1_1_bounces_and_suppresses_the_address(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """A 5.1.1 refusal records `bounced`, suppresses the address, and stops its next mail."""
    first = make_command()
    sink.faults.bad_addresses.add(first.to.lower())
    second = make_command(to=first.to.upper(), user_id=first.user_id)
    start_sender()  # type: ignore[operator]
    await cluster.send(first)
    (bounced,) = await cluster.deliveries(1)
    assert (bounced.status, bounced.smtp_code, bounced.smtp_enhanced_code) == (
        "bounced",
        550,
        "5.1.1",
    )
    suppressions = await cluster.read(cluster.topics.internal("suppressions"), 1)
    assert suppressions[0].key == first.to.lower().encode()
    assert orjson.loads(suppressions[0].value)["reason"] == "bounce"
    await cluster.send(second)
    records = await cluster.deliveries(2)
    assert records[1].status == "suppressed"
    assert records[1].reason == "suppressed_address"
    assert sink.refused == 1
    assert sink.received == []


async def test_server_down_then_up_loses_nothing(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """Commands sent while the SMTP server is down are all delivered, once, when it is back."""
    commands = [make_command() for _ in range(10)]
    await sink.down()
    start_sender()  # type: ignore[operator]
    await cluster.send(*commands)
    deferred = await cluster.deliveries(10)
    assert {r.status for r in deferred} == {"deferred"}
    await sink.up()
    async with asyncio.timeout(40):
        received = await sink.wait_for(10)
    keys = sorted(r.message()["X-Nudge-Idempotency-Key"] for r in received)
    assert keys == sorted(c.idempotency_key for c in commands)
    await cluster.handled()
    assert len(sink.received) == 10


def _subject(raw: bytes) -> str:
    header = raw.split(b"\r\nSubject: ", 1)[1].split(b"\r\n")[0].decode()
    return str(make_header(decode_header(header)))


async def test_iso_2022_jp_for_a_configured_carrier_domain(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """A docomo.ne.jp recipient gets ISO-2022-JP parts and subject that decode to the same text."""
    command = make_command(to="hana@docomo.ne.jp")
    start_sender()  # type: ignore[operator]
    await cluster.send(command)
    async with asyncio.timeout(30):
        received = await sink.wait_for(1)
    message = received[0].message()
    assert b"=?iso-2022-jp?" in received[0].raw
    assert _subject(received[0].raw).startswith("ご注文ありがとうございます")
    text = message.get_body(("plain",))
    assert text is not None
    assert text.get_content_charset() == "iso-2022-jp"
    assert "山田 花子 様" in text.get_content()
    records = [decode_delivery(r.value) for r in await cluster.read(cluster.topics.deliveries, 1)]
    assert records[0].status == "sent"


async def test_retries_exhausted_go_to_the_dead_letter_topic(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """A server that always answers 451 gets `send_max_attempts` tries, then the DLT."""
    sink.faults.fail_ratio = 1.0
    command = make_command()
    start_sender()  # type: ignore[operator]
    await cluster.send(command)
    records = await cluster.deliveries(4, limit=40)
    assert [(r.status, r.attempt) for r in records] == [
        ("deferred", 1),
        ("deferred", 2),
        ("deferred", 3),
        ("failed", 4),
    ]
    assert records[-1].reason == "retries_exhausted"
    (dead,) = await cluster.read(Topics.dead_letter(cluster.topics.send_commands), 1)
    assert read_headers(dead.headers)["nudge-error-reason"] == "retries_exhausted"
    assert dead.value == (await cluster.read(cluster.topics.send_commands, 1))[0].value
    assert sink.received == []


async def test_contact_policy_is_checked_right_before_sending(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """After an unsubscribe, marketing mail is `suppressed` while transactional mail is sent."""
    user = "u-policy"
    policy = ContactPolicy(
        user_id=user, marketing_allowed=False, deleted=False, at=datetime.now(UTC)
    )
    await cluster.producer.send_and_wait(
        cluster.topics.internal(CONTACT_POLICY_TOPIC), encode_policy(policy), key=user.encode()
    )
    marketing = make_command(
        user_id=user,
        kind="marketing",
        journey="winback",
        step="winback_2",
        template="winback_2",
        variables={"name": "山田 花子"},
        created_at=daytime_now(),
    )
    transactional = make_command(user_id=user)
    start_sender()  # type: ignore[operator]
    await cluster.send(marketing, transactional)
    records = await cluster.deliveries(2)
    by_key = {r.idempotency_key: r for r in records}
    assert by_key[marketing.idempotency_key].status == "suppressed"
    assert by_key[marketing.idempotency_key].reason == "no_marketing_consent"
    assert by_key[transactional.idempotency_key].status == "sent"
    assert len(sink.received) == 1


async def test_a_reminder_held_back_by_a_451_is_not_sent_after_the_purchase(
    cluster: Cluster, sink: SmtpSink, start_sender: object, sender_settings: Settings
) -> None:
    """The cart reminder is greylisted (451). While it waits for its retry the user orders, and
    the processor's contact policy withdraws cart_abandonment: the retry is `suppressed` /
    `exited` and no mail arrives."""
    sink.faults.fail_first = 1
    user = "u-ordered"
    reminder = make_command(
        user_id=user,
        kind="marketing",
        journey="cart_abandonment",
        step="reminder_1",
        template="cart_reminder_1",
        variables=sample_variables()["cart_reminder_1"],
        created_at=daytime_now(),
    )
    # Retries ~3 s apart: time to publish the withdrawal before the second attempt.
    start_sender(dataclasses.replace(sender_settings, send_retry_base_seconds=3.0))  # type: ignore[operator]
    await cluster.send(reminder)
    [first] = await cluster.deliveries(1)
    assert (first.status, first.attempt, first.smtp_code) == ("deferred", 1, 451)
    ordered = ContactPolicy(
        user_id=user,
        marketing_allowed=True,
        deleted=False,
        at=datetime.now(UTC),
        withdrawn=("cart_abandonment",),
    )
    await cluster.producer.send_and_wait(
        cluster.topics.internal(CONTACT_POLICY_TOPIC), encode_policy(ordered), key=user.encode()
    )
    records = await cluster.deliveries(2)
    assert [(r.status, r.attempt, r.reason) for r in records[1:]] == [("suppressed", 2, "exited")]
    await cluster.handled()
    assert sink.received == []


async def test_two_senders_share_the_partitions_and_send_each_mail_once(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """A second sender joining the group mid-stream (a rebalance) loses and repeats nothing."""
    first = [make_command() for _ in range(60)]
    second = [make_command() for _ in range(60)]
    start_sender()  # type: ignore[operator]
    await cluster.send(*first)
    async with asyncio.timeout(30):
        await sink.wait_for(20)
    start_sender()  # type: ignore[operator]
    await cluster.send(*second)
    async with asyncio.timeout(60):
        await sink.wait_for(120)
    await cluster.handled()
    keys = [r.message()["X-Nudge-Idempotency-Key"] for r in sink.received]
    assert sorted(keys) == sorted(c.idempotency_key for c in first + second)


async def test_the_ledger_topic_is_compacted_and_time_limited(
    cluster: Cluster, sink: SmtpSink, start_sender: object
) -> None:
    """The idempotency ledger keeps the latest state per key, for the ledger window."""
    start_sender()  # type: ignore[operator]
    await cluster.send(make_command())
    async with asyncio.timeout(30):
        await sink.wait_for(1)
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        name = cluster.topics.internal("sent-keys")
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    configs = {c[0]: c[1] for c in described[0].resources[0][4]}
    assert configs["cleanup.policy"] == "compact,delete"
    assert configs["retention.ms"] == str(14 * 24 * 3600 * 1000)
