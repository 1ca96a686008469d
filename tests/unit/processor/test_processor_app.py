"""The worker's Faust app: which paths it takes (its own batch paths only on the release they were
read in), its producer limit, and the per-partition metrics it reports across rebalances."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import faust
import pytest
from faust.types import TP
from prometheus_client import REGISTRY

from nudge import metrics
from nudge.admin import BROKER_MAX_MESSAGE_BYTES, DEAD_LETTER_MAX_MESSAGE_BYTES
from nudge.processor.app import (
    Processor,
    ProcessorOptions,
    RecoveryWatcher,
    _read_holes_again,
    create_processor,
)
from nudge.processor.cli import load_engine
from nudge.processor.fastpath import FAST_PATHS_FAUST_VERSION, DirectTableStore, FastApp
from nudge.processor.kafka import TableStore
from nudge.processor.offsetwatch import Admission, Hole
from nudge.processor.ports import Record
from nudge.settings import Settings


def _build(tmp_path: Path) -> Processor:
    settings = Settings(token_secret=b"x" * 32, state_dir=tmp_path, topic_prefix="t.")
    engine, codec = load_engine(settings)
    return create_processor(settings, engine=engine, codec=codec, options=ProcessorOptions())


def test_the_installed_faust_is_the_release_the_fast_paths_were_written_for() -> None:
    assert faust.__version__ == FAST_PATHS_FAUST_VERSION


def test_a_worker_on_that_release_takes_the_batch_paths(tmp_path: Path) -> None:
    processor = _build(tmp_path)
    assert isinstance(processor.app, FastApp)
    assert isinstance(processor.handler.store, DirectTableStore)


def test_another_faust_release_runs_fausts_own_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    processor = _build(tmp_path)
    assert not isinstance(processor.app, FastApp)
    assert isinstance(processor.handler.store, TableStore)


def lag(partition: int, topic: str = "t.events") -> float | None:
    return REGISTRY.get_sample_value(
        "nudge_consumer_lag_messages",
        {"service": "processor", "topic": topic, "partition": str(partition)},
    )


@dataclass
class StubConsumer:
    """What `report_lag` reads of Faust's consumer: committed offsets, positions, high waters."""

    highwaters: dict[TP, int]
    _committed_offset: dict[TP, int] = field(default_factory=dict)

    async def position(self, tp: TP) -> int:
        return 0

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


def assign(monkeypatch: pytest.MonkeyPatch, processor: Processor, actives: set[TP]) -> None:
    """Make `actives` this worker's assignment, as Faust's assignor reports it."""
    monkeypatch.setattr(processor.app.assignor, "assigned_actives", lambda: set(actives))


async def test_the_lag_of_a_revoked_partition_is_no_longer_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that lost a lagging partition stops reporting its lag: the worker that has it
    now reports it, and the alert's sum counts it once."""
    processor = _build(tmp_path)
    actives = {TP("t.events", 5), TP("t.events", 6)}
    processor.app.consumer = StubConsumer(highwaters=dict.fromkeys(actives, 50_000))
    assign(monkeypatch, processor, actives)
    await processor.report_lag()
    assert (lag(5), lag(6)) == (50_000, 50_000)
    actives.discard(TP("t.events", 5))
    await processor.report_lag()
    assert (lag(5), lag(6)) == (None, 50_000)


def reported(partition: int) -> dict[str, float | None]:
    """What this worker exports about `partition`: pending timers, table keys, events lag."""
    labels = {"partition": str(partition)}
    return {
        "nudge_pending_timers": REGISTRY.get_sample_value("nudge_pending_timers", labels),
        "nudge_table_keys": REGISTRY.get_sample_value("nudge_table_keys", labels),
        "nudge_consumer_lag_messages": lag(partition),
    }


async def test_a_rebalance_removes_every_series_of_the_revoked_partitions_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Faust announces a new assignment, the pending-timer, table-key and consumer-lag
    series of the partitions that went away are removed at once (no tick or lag sample needed),
    and those of the partitions kept stay."""
    processor = _build(tmp_path)
    actives = {TP("t.events", 5), TP("t.events", 6)}
    processor.app.consumer = StubConsumer(highwaters=dict.fromkeys(actives, 50_000))
    assign(monkeypatch, processor, actives)
    await processor.report_lag()
    for partition in (5, 6):
        metrics.PENDING_TIMERS.labels(str(partition)).set(3)
        metrics.TABLE_KEYS.labels(str(partition)).set(9)
    assign(monkeypatch, processor, {TP("t.events", 6)})
    await processor.app.on_partitions_assigned.send(set())
    assert reported(5) == dict.fromkeys(reported(5), None)
    assert reported(6) == {
        "nudge_pending_timers": 3,
        "nudge_table_keys": 9,
        "nudge_consumer_lag_messages": 50_000,
    }


def test_the_producer_takes_a_dead_letter_of_the_largest_record_the_broker_accepts(
    tmp_path: Path,
) -> None:
    """Faust's default (1,000,000 bytes) is below the broker's (1,048,588): the processor's
    producer is raised to what a `-dlt` topic takes, the broker's limit plus headers."""
    processor = _build(tmp_path)
    assert processor.app.conf.producer_max_request_size == DEAD_LETTER_MAX_MESSAGE_BYTES
    assert DEAD_LETTER_MAX_MESSAGE_BYTES > BROKER_MAX_MESSAGE_BYTES


@dataclass
class SeekingConsumer:
    """What the recovery watch reads of Faust's consumer, and the seeks it asks for."""

    assigned: set[TP]
    flow_active: bool = True
    sought: list[dict[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return self.assigned

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.sought.append(dict(partitions))


async def test_a_recovery_that_reads_nothing_gets_its_partitions_sought_back(
    tmp_path: Path,
) -> None:
    """The watch runs as a service of its own, which the worker starts before the app: Faust's
    app timers start only after the first recovery, which can hang too. A recovery that reads
    nothing while records remain gets its changelog partitions sought back to what it read."""
    settings = Settings(token_secret=b"x" * 32, state_dir=tmp_path, topic_prefix="t.")
    engine, codec = load_engine(settings)
    options = ProcessorOptions(recovery_reseek_after=0.01)
    processor = create_processor(settings, engine=engine, codec=codec, options=options)
    assert isinstance(processor.watcher, RecoveryWatcher)
    changelog = TP("t.processor-users-changelog", 3)
    consumer = SeekingConsumer(assigned={changelog})
    processor.app.consumer = consumer  # type: ignore[assignment]
    recovery = processor.app.tables.recovery  # type: ignore[attr-defined]
    recovery.in_recovery = True
    recovery.active_highwaters[changelog] = 50
    recovery.active_offsets[changelog] = 41
    await processor.watcher.check()
    assert consumer.sought == []
    await asyncio.sleep(0.02)
    await processor.watcher.check()
    assert consumer.sought == [{changelog: 41}]
    assert processor.alive()


@dataclass
class ReadingAgainConsumer:
    sought: list[tuple[TP, int]] = field(default_factory=list)
    accepted: list[tuple[TP, int, int]] = field(default_factory=list)

    async def read_again(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))

    async def accept_gap(self, tp: TP, start: int, end: int) -> None:
        self.accepted.append((tp, start, end))


def source(topic: str) -> str:
    return topic.removeprefix("t.")


def holes_counted(action: str) -> float:
    labels = {"source": "events", "action": action}
    return REGISTRY.get_sample_value("nudge_offset_holes_total", labels) or 0.0


def batch(*offsets: int) -> tuple[list[Record], list[object]]:
    events = [object() for _ in offsets]
    records = [
        Record(topic="t.events", partition=0, offset=o, key=b"u", value=b"{}", context=e)
        for o, e in zip(offsets, events, strict=True)
    ]
    return records, events


async def test_records_past_a_hole_are_taken_out_of_the_batch_and_read_again() -> None:
    """Taken out of the events `take_batches` acks, and the partition sought back to the hole."""
    records, events = batch(10, 11, 15, 16)
    consumer = ReadingAgainConsumer()
    hole = Hole("t.events", 0, 12, 15)
    admission = Admission(handle=records[:2], held=records[2:], read_again=[hole])
    before = holes_counted("read_again")
    handled = await _read_holes_again(consumer, admission, events, read_again=True, source=source)
    assert holes_counted("read_again") == before + 1
    assert handled == records[:2]
    assert events == [records[0].context, records[1].context]
    assert consumer.sought == [(TP("t.events", 0), 12)]


async def test_where_records_cannot_be_read_again_the_batch_is_handled_whole() -> None:
    """Faust's own paths ack what they handed over: the hole is only reported."""
    records, events = batch(10, 15)
    consumer = ReadingAgainConsumer()
    admission = Admission(
        handle=records[:1], held=records[1:], read_again=[Hole("t.events", 0, 11, 15)]
    )
    before = holes_counted("reported")
    handled = await _read_holes_again(
        consumer, admission, list(events), read_again=False, source=source
    )
    assert handled == records
    assert holes_counted("reported") == before + 1
    assert consumer.sought == []


async def test_a_hole_taken_as_the_logs_own_is_handed_to_fausts_gap_tracking() -> None:
    records, events = batch(140, 141)
    consumer = ReadingAgainConsumer()
    admission = Admission(handle=records, accepted=[Hole("t.events", 0, 100, 140)])
    before = holes_counted("accepted")
    handled = await _read_holes_again(consumer, admission, events, read_again=True, source=source)
    assert holes_counted("accepted") == before + 1
    assert handled == records
    assert consumer.accepted == [(TP("t.events", 0), 100, 140)]
