"""The chaos log's promises (chaos/workload.py): its expected mails do not depend on the clock.

Pure: the log is generated and replayed through `nudge simulate`'s engine, no Kafka.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from chaos.run import invalid_lines, reference
from chaos.workload import chaos_journeys, daytime_zone, generate

START = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


Run = tuple[list[dict[str, object]], dict[str, str], dict[str, str]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """(the valid events, once per event_id; key -> journey/step; key -> recipient)."""
    work = tmp_path_factory.mktemp("chaos-workload")
    workload = generate(users=300, events=1500, seed=3, start=START, rate=100.0)
    path = workload.write(work / "events.jsonl")
    expected, recipients = reference(path, chaos_journeys(work / "journeys.yaml"), 0.001)
    invalid = invalid_lines(workload.lines)
    events = {}
    for line in workload.lines:
        if line not in invalid:
            event = orjson.loads(line)
            events.setdefault(event["event_id"], event)
    return list(events.values()), expected, recipients


def test_the_same_seed_gives_the_same_log() -> None:
    """Byte for byte, so a failing run can be replayed."""
    first = generate(users=50, events=300, seed=5, start=START, rate=50.0)
    again = generate(users=50, events=300, seed=5, start=START, rate=50.0)
    assert first.lines == again.lines


def test_every_intended_bad_record_is_invalid_for_the_product() -> None:
    """1 % malformed plus the hostile records, all rejected by the product's own codec."""
    workload = generate(users=200, events=1000, seed=2, start=START, rate=100.0)
    invalid = invalid_lines(workload.lines)
    assert set(workload.malformed) <= invalid.keys()
    assert len(workload.malformed) >= 10 + 3 * 8


@pytest.mark.parametrize("hour", range(24))
def test_users_live_where_it_is_midday(hour: int) -> None:
    """Quiet hours (21:00-09:00 local) never apply during a run of under an hour."""
    now = START.replace(hour=hour)
    zone = daytime_zone(now)
    offset = 0 if zone == "Etc/GMT" else -int(zone.removeprefix("Etc/GMT"))
    local = now + timedelta(hours=offset)
    assert 11 <= local.hour <= 13


def test_nobody_can_reach_the_frequency_cap(run: Run) -> None:
    """At most 2 marketing mails per user in the whole run, so the cap never decides."""
    _, expected, recipients = run
    marketing = ("onboarding", "cart_abandonment", "first_purchase")
    per_user = Counter(
        recipients[key] for key, step in expected.items() if step.split("/")[0] in marketing
    )
    assert per_user, "the log must exercise marketing journeys"
    assert max(per_user.values()) <= 2


def test_no_event_can_cancel_a_pending_timer(run: Run) -> None:
    """No deletions, unsubscribes or orders after a cart; one cart change per cart."""
    events, _, _ = run
    kinds = Counter(str(e.get("type")) for e in events)
    assert kinds["user.deleted"] == kinds["user.unsubscribed"] == kinds["cart.item_removed"] == 0
    users_with: dict[str, set[str]] = defaultdict(set)
    for event in events:
        users_with[str(event["type"])].add(str(event["user_id"]))
    assert not users_with["cart.item_added"] & users_with["order.completed"]
    per_user = Counter(str(e["user_id"]) for e in events if e.get("type") == "cart.item_added")
    assert max(per_user.values()) == 1
