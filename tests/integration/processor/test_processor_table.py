"""The state table as the at-least-once worker writes it (fastpath.DirectTableStore): straight to
the partition databases, changelog records produced per batch, in Faust's own format."""

from __future__ import annotations

import signal

import pytest

from nudge.processor.kafka import TABLE_NAME
from nudge.processor.timers import unpack

from .conftest import Cluster, Kafka, Worker, daytime_zone, event

pytestmark = pytest.mark.integration

CART = {"product_id": "p-9", "name": "Tea set", "price": 4800, "quantity": 1}
USERS = [f"u-{n}" for n in range(24)]


@pytest.mark.timeout(150)
def test_each_write_reaches_the_changelog_of_its_partition_and_restores_elsewhere(
    cluster: Cluster, kafka: Kafka
) -> None:
    """Every user's state is on the changelog partition of their events (with that partition in
    its header); a worker with an empty state directory restores all of it from there, and one
    restarted on the same directory after SIGKILL has it too (both report every pending
    reminder)."""
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
    assert fresh.stop(signal.SIGTERM) == 0

    again = cluster.start("p1")  # the first worker's state directory
    again.wait_ready(timeout=60)
    assert _pending(again) == len(USERS)
    assert again.metric("nudge_commands_emitted_total") == 0


def _pending(worker: Worker) -> float:
    # The pending-timers gauge is sampled every 5 s (and set when a due index loads).
    return worker.wait_for_metric("nudge_pending_timers", len(USERS), timeout=15)
