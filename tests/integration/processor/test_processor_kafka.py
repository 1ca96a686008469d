"""The processor as real `nudge processor` workers against the real broker (issue 4)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from nudge.deadletter import read_headers
from nudge.processor.kafka import TABLE_NAME
from nudge.processor.timers import unpack

from .conftest import Cluster, Kafka, daytime_zone, event, one_user_per_partition

pytestmark = pytest.mark.integration

CART = {"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 1}
ORDER = {"order_id": "o-1", "total": 4800, "currency": "JPY", "items": []}


def steps(commands: list[dict[str, Any]], journey: str) -> list[tuple[str, str]]:
    return [(c["user_id"], c["step"]) for c in commands if c["journey"] == journey]


def reached(journey: str, users: list[str]) -> Callable[[list[dict[str, Any]]], bool]:
    """Whether every one of `users` has a command of `journey` among the commands."""
    return lambda commands: {u for u, _ in steps(commands, journey)} >= set(users)


def test_order_confirmation_and_dead_letter_keep_the_stream_going(
    cluster: Cluster, kafka: Kafka
) -> None:
    """A malformed record lands in events-dlt with its reason; the order after it becomes an
    order_confirmation command keyed by the user (the walking skeleton)."""
    worker = cluster.start("p1")
    worker.wait_ready()
    zone = daytime_zone()
    kafka.produce([(b"u-1", b"{not json")])
    kafka.send_events(event("order.completed", "u-1", event_id="e-1", zone=zone, **ORDER))
    found = kafka.wait_for_commands(
        lambda cs: steps(cs, "order_confirmation") == [("u-1", "confirmation")], 30, cluster.logs
    )
    assert [c["kind"] for c in found if c["journey"] == "order_confirmation"] == ["transactional"]
    [letter] = kafka.read(kafka.topics.dead_letter(kafka.topics.events))
    assert letter.value == b"{not json"
    assert letter.key == b"u-1"
    assert read_headers(letter.headers)["nudge-error-reason"] == "malformed_json"
    assert worker.metric("nudge_dead_lettered_total") == 1


def test_cart_reminder_fires_after_its_delay_and_an_order_cancels_it(
    cluster: Cluster, kafka: Kafka
) -> None:
    """With NUDGE_DELAY_SCALE=0.001 the 60-minute reminder comes after 3.6 s, once; the user who
    ordered in between gets no reminder."""
    worker = cluster.start("p1")
    worker.wait_ready()
    zone = daytime_zone()
    started = time.monotonic()
    kafka.send_events(
        event("cart.item_added", "u-a", event_id="e-a1", zone=zone, **CART),
        event("cart.item_added", "u-b", event_id="e-b1", zone=zone, **CART),
    )
    worker.wait_for_metric("nudge_events_consumed_total", 2)  # both reminders are pending
    kafka.send_events(event("order.completed", "u-b", event_id="e-b2", zone=zone, **ORDER))
    # Later carts, one in each partition: their reminders come due after any of u-a's or u-b's,
    # and a tick fires its partition's due timers earliest first. Once theirs are out, a second
    # reminder, or one for u-b, would be out too.
    later = one_user_per_partition("u-later", 2)
    kafka.send_events(
        *(event("cart.item_added", u, event_id=f"e-{u}", zone=zone, **CART) for u in later)
    )
    kafka.wait_for_commands(lambda cs: steps(cs, "cart_abandonment") != [], 30, cluster.logs)
    assert time.monotonic() - started >= 3.6
    found = kafka.wait_for_commands(reached("cart_abandonment", later), 30, cluster.logs)
    assert sorted(steps(found, "cart_abandonment")) == sorted(
        [("u-a", "reminder_1"), *((u, "reminder_1") for u in later)]
    )
    assert ("u-b", "confirmation") in steps(found, "order_confirmation")
    assert worker.metric("nudge_timer_lag_seconds_count") >= 1


@pytest.mark.timeout(150)
def test_a_reminder_pending_when_the_worker_is_killed_fires_exactly_once(
    cluster: Cluster, kafka: Kafka
) -> None:
    """SIGKILL while a reminder is pending; it comes due while no worker runs; a new worker (fresh
    state dir: it restores the table from the changelog) fires it on recovery, exactly once."""
    # 60 min x 0.008 = 28.8 s. The replacement starts after the due time and fires the overdue
    # reminder at its first tick, ~10 s late: within the staleness grace whether the engine
    # scales the grace (28.8 s) or not (1 h).
    scale = "0.008"
    first = cluster.start("p1", NUDGE_DELAY_SCALE=scale)
    first.wait_ready()
    zone = daytime_zone()
    kafka.send_events(event("cart.item_added", "u-k", event_id="e-k1", zone=zone, **CART))
    changelog = f"{kafka.topics.processor_app_id}-{TABLE_NAME}-changelog"
    stored = kafka.read(changelog, at_least=1, timeout=20)  # the pending reminder, restorable
    wake_at = unpack(stored[-1].value or b"").wake_at
    assert wake_at is not None
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # The reminder must come due while no worker runs: wait out its wake-up as stored (the
    # cart's time + 60 min x 0.008), the one thing this test has to let pass.
    time.sleep(max(0.0, wake_at - time.time()))
    assert kafka.commands() == []

    second = cluster.start("p2", NUDGE_DELAY_SCALE=scale)
    second.wait_ready(timeout=60)
    kafka.wait_for_commands(lambda cs: steps(cs, "cart_abandonment") != [], 60, cluster.logs)
    # An order in each partition, after the reminder: handled after whatever is left of the
    # cart event (replayed if the kill came before its offset was committed), so once both are
    # confirmed, a second reminder from it would be out too.
    later = one_user_per_partition("u-later", 2)
    kafka.send_events(
        *(event("order.completed", u, event_id=f"e-{u}", zone=zone, **ORDER) for u in later)
    )
    found = kafka.wait_for_commands(reached("order_confirmation", later), 30, cluster.logs)
    reminders = [c for c in found if c["journey"] == "cart_abandonment"]
    # Fired by the new worker, from the restored timer (its first tick) or the replayed cart
    # event (the engine fires what is already due, and knows the event's id); either way once.
    assert [(c["user_id"], c["step"]) for c in reminders] == [("u-k", "reminder_1")]
    assert second.metric("nudge_commands_emitted_total", journey="cart_abandonment") == 1


@pytest.mark.timeout(150)
def test_two_workers_split_the_partitions_and_each_user_is_handled_once(
    cluster: Cluster, kafka: Kafka
) -> None:
    """Two workers in one group own disjoint partitions; every order is confirmed exactly once,
    before and after one worker stops (SIGTERM: graceful, exit code 0)."""
    cluster.env["NUDGE_TOPIC_PARTITIONS"] = "4"
    one = cluster.start("p1")
    two = cluster.start("p2")
    a = one.wait_ready(partitions=lambda owned: 0 < len(owned) < 4)
    b = two.wait_ready(partitions=lambda owned: 0 < len(owned) < 4)
    assert a | b == {0, 1, 2, 3}
    assert not a & b
    zone = daytime_zone()
    first = [f"u-{n}" for n in range(20)]
    kafka.send_events(
        *(event("order.completed", u, event_id=f"e-{u}", zone=zone, **ORDER) for u in first)
    )
    kafka.wait_for_commands(lambda cs: len(steps(cs, "order_confirmation")) >= 20, 30, cluster.logs)
    assert one.metric("nudge_events_consumed_total") > 0
    assert two.metric("nudge_events_consumed_total") > 0

    assert two.stop(signal.SIGTERM) == 0
    one.wait_ready(timeout=60, partitions=lambda owned: owned == {0, 1, 2, 3})
    second = [f"v-{n}" for n in range(20)]
    kafka.send_events(
        *(event("order.completed", u, event_id=f"e-{u}", zone=zone, **ORDER) for u in second)
    )
    # A closing order in each partition: handled after everything sent there before it, so once
    # every order is confirmed, a repeated confirmation from either round would be out too.
    closing = one_user_per_partition("w", 4)
    kafka.send_events(
        *(event("order.completed", u, event_id=f"e-{u}", zone=zone, **ORDER) for u in closing)
    )
    everyone = first + second + closing
    found = kafka.wait_for_commands(reached("order_confirmation", everyone), 30, cluster.logs)
    confirmed = Counter(u for u, _ in steps(found, "order_confirmation"))
    assert confirmed == Counter({u: 1 for u in everyone})
    records = kafka.read(kafka.topics.send_commands)
    assert all(r.key == orjson.loads(r.value)["user_id"].encode() for r in records)
