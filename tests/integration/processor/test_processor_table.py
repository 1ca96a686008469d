"""The state table as the at-least-once worker writes it (fastpath.DirectTableStore): straight to
the partition databases, changelog records produced per batch, in Faust's own format."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from nudge.processor.kafka import TABLE_NAME
from nudge.processor.timers import unpack
from nudge.testing import wait_until
from nudge.testkafka import Record

from .conftest import Cluster, Kafka, Worker, daytime_zone, event, one_user_per_partition

pytestmark = pytest.mark.integration

CART = {"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 1}
USERS = [f"u-{n}" for n in range(24)]


@pytest.mark.timeout(150)
def test_each_write_reaches_the_changelog_of_its_partition_and_restores_elsewhere(
    cluster: Cluster, kafka: Kafka
) -> None:
    """Every user's state is on the changelog partition of their events (with that partition in
    its header); a worker with an empty state directory restores all of it from there (and sends
    the reminders that come due), and one restarted on the first worker's directory after SIGKILL
    catches up with what the other wrote meanwhile: every reminder pending, none sent again."""
    cluster.env["NUDGE_TOPIC_PARTITIONS"] = "4"
    first = cluster.start("p1")
    first.wait_ready()
    zone = daytime_zone()
    kafka.send_events(
        *(event("cart.item_added", u, event_id=f"e-{u}", zone=zone, **CART) for u in USERS)
    )
    first.wait_for_metric("nudge_events_consumed_total", len(USERS))

    changelog = f"{kafka.topics.processor_app_id}-{TABLE_NAME}-changelog"
    events = {r.key: r.partition for r in kafka.read(kafka.topics.events)}
    stored = kafka.read(changelog, at_least=len(USERS), timeout=10)
    assert sorted(r.key.decode() for r in stored) == sorted(USERS)
    for record in stored:
        assert record.partition == events[record.key]
        value = unpack(record.value)
        assert value.partition == record.partition
        assert value.wake_at is not None

    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    fresh = cluster.start("p2")
    fresh.wait_ready(timeout=60)
    assert _pending(fresh) == len(USERS)
    # The first reminders come due while `fresh` runs: it sends them and stores every user's next
    # wake-up (the second reminder) on the changelog, past what p1's state directory holds.
    first_wake_ups = {r.key: unpack(r.value or b"").wake_at for r in stored}
    wait_until(
        lambda: _moved_past(kafka.read(changelog), first_wake_ups),
        timeout=30,
        failure=lambda: (
            f"the changelog does not hold the restored worker's writes\n{cluster.logs()}"
        ),
    )
    assert fresh.stop(signal.SIGTERM) == 0

    again = cluster.start("p1")  # the first worker's state directory: the first reminders due
    again.wait_ready(timeout=60)
    assert _pending(again) == len(USERS)
    # Sentinels: a cart in each partition, whose reminder comes due after every first reminder
    # of USERS, and a tick fires its partition's due timers earliest first. Once theirs are out,
    # a first reminder the worker still held due (its directory not caught up with the
    # changelog) would have been sent again too.
    later = one_user_per_partition("u-later", 4)
    kafka.send_events(
        *(event("cart.item_added", u, event_id=f"e-{u}", zone=zone, **CART) for u in later)
    )
    kafka.wait_for_commands(
        lambda cs: {u for u, step in _cart_steps(cs) if step == "reminder_1"} >= set(later),
        30,
        cluster.logs,
    )
    assert again.metric(
        "nudge_commands_emitted_total", journey="cart_abandonment", step="reminder_1"
    ) == len(later)


def _pending(worker: Worker) -> float:
    # The pending-timers gauge is sampled every 5 s (and set when a due index loads).
    return worker.wait_for_metric("nudge_pending_timers", len(USERS), timeout=15)


def _cart_steps(commands: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["user_id"], c["step"]) for c in commands if c["journey"] == "cart_abandonment"]


def _moved_past(records: list[Record], wake_ups: dict[bytes | None, float | None]) -> bool:
    """Whether every user's latest state on the changelog wakes later than in `wake_ups`."""
    latest = {r.key: unpack(r.value or b"").wake_at for r in records}
    return all((latest[k] or 0.0) > (w or 0.0) for k, w in wake_ups.items())
