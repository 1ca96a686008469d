"""The Prometheus exposition: names by convention, bounded labels, clean under `promtool`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from nudge import metrics

REPO = Path(__file__).resolve().parents[2]
ALERT_RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "nudge.json"


def nudge_metrics() -> dict[str, MetricWrapperBase]:
    """Every metric object metrics.py defines, by its attribute name."""
    return {
        name: value for name, value in vars(metrics).items() if isinstance(value, MetricWrapperBase)
    }


def exposed_name(metric: MetricWrapperBase) -> str:
    """The family name as scraped: counters gain `_total`, info metrics `_info`."""
    (family,) = metric.describe()
    suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
    return str(family.name) + suffix


def touch_all() -> None:
    """Give every metric (every labelled child) a sample so the exposition shows all of them."""
    for metric in nudge_metrics().values():
        labels = {name: "sample" for name in metric._labelnames}
        child = metric.labels(**labels) if labels else metric
        if isinstance(child, Counter):
            child.inc()
        elif isinstance(child, Gauge):
            child.set(1)
        elif isinstance(child, Histogram):
            child.observe(0.2)
        elif isinstance(child, Info):
            metrics.describe_process("test")
        else:  # pragma: no cover - a new metric type needs a line above
            pytest.fail(f"test_metrics does not know how to touch {type(child).__name__}")


def promtool() -> str | None:
    """promtool on PATH, or the copy `make check-deploy` installs into .cache/tools/bin."""
    local = REPO / ".cache" / "tools" / "bin" / "promtool"
    return shutil.which("promtool") or (str(local) if os.access(local, os.X_OK) else None)


@pytest.mark.parametrize("attribute", sorted(nudge_metrics()))
def test_names_follow_prometheus_conventions(attribute: str) -> None:
    """Every family has the nudge_ prefix, snake case, help text, and a unit or _total suffix."""
    metric = nudge_metrics()[attribute]
    name = exposed_name(metric)
    assert re.fullmatch(r"nudge_[a-z0-9_]+", name), name
    assert metric._documentation.strip(), f"{name} has no help text"
    assert not re.search(r"_(milliseconds|ms|minutes|hours|bytes_total)(_|$)", name), name
    if isinstance(metric, Counter):
        assert name.endswith("_total")
    if isinstance(metric, Histogram):
        assert name.endswith("_seconds"), f"{name}: histograms here measure time in seconds"


@pytest.mark.parametrize("attribute", sorted(nudge_metrics()))
def test_labels_come_from_bounded_sets(attribute: str) -> None:
    """No label carries an identifier (user, address, command, event) that would explode series."""
    metric = nudge_metrics()[attribute]
    unbounded = {"user_id", "email", "to", "command_id", "event_id", "idempotency_key", "url"}
    assert not unbounded & set(metric._labelnames)


def test_exposition_has_every_metric_and_no_created_series() -> None:
    """The /metrics body lists each family once and omits the `_created` timestamps."""
    touch_all()
    body, content_type = metrics.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for metric in nudge_metrics().values():
        assert f"\n{exposed_name(metric)}" in f"\n{text}", exposed_name(metric)
    assert not re.search(r"^nudge_\w+_created", text, re.MULTILINE)


def test_build_info_names_service_and_version() -> None:
    """`nudge_build_info` tells which service and version a scrape target runs."""
    metrics.describe_process("sender")
    text = metrics.exposition()[0].decode()
    assert re.search(r'^nudge_build_info\{service="sender",version="[^"]+"\} 1\.0$', text, re.M)


def test_readiness_is_sampled_at_every_scrape_and_a_failing_check_reads_not_ready() -> None:
    """`nudge_ready` follows the process's readiness check at scrape time (a worker stuck in a
    recovery alerts however quiet its traffic), and a check that raises does not break /metrics."""
    state: dict[str, object] = {"ready": False}

    def ready() -> bool:
        if isinstance(state["ready"], Exception):
            raise state["ready"]
        return bool(state["ready"])

    def scraped() -> str:
        text = metrics.exposition()[0].decode()
        found = re.search(r'^nudge_ready\{service="probe"\} (\S+)$', text, re.M)
        assert found, text
        return found.group(1)

    metrics.report_readiness("probe", ready)
    assert scraped() == "0.0"
    state["ready"] = True
    assert scraped() == "1.0"
    state["ready"] = RuntimeError("the tables are not built yet")
    assert scraped() == "0.0"
    metrics.READY.remove("probe")


def test_promtool_check_metrics_is_clean() -> None:
    """`promtool check metrics` finds nothing to complain about in the full exposition."""
    tool = promtool()
    if tool is None:
        pytest.skip("promtool not installed: `make check-deploy` installs it into .cache/tools")
    touch_all()
    body = metrics.exposition()[0]
    result = subprocess.run(  # noqa: S603 - a fixed tool on our own exposition
        [tool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_alert_rules_and_dashboard_use_only_existing_metrics() -> None:
    """Every nudge_* name the alert rules and the dashboard query is one metrics.py exposes."""
    exposed = set()
    for metric in nudge_metrics().values():
        name = exposed_name(metric)
        exposed.add(name)
        if isinstance(metric, Histogram):
            exposed |= {f"{metric._name}_bucket", f"{metric._name}_sum", f"{metric._name}_count"}
    for path in (ALERT_RULES, DASHBOARD):
        used = set(re.findall(r"\bnudge_[a-z0-9_]+", path.read_text()))
        assert used <= exposed, f"{path.name} queries unknown metrics: {sorted(used - exposed)}"


def lag_samples(service: str) -> dict[tuple[str, str], float]:
    """The consumer-lag series of one service, as (topic, partition) → value."""
    (family,) = metrics.CONSUMER_LAG.collect()
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for s in family.samples
        if s.labels["service"] == service
    }


def test_consumer_lag_follows_the_assignment() -> None:
    """Revoked partitions lose their series; negative lags (racy offsets) are reported as 0;
    another service's series are its own."""
    metrics.set_consumer_lag("lagtest-other", {("t.events", 0): 4})
    metrics.set_consumer_lag("lagtest", {("t.events", 0): 5, ("t.events", 1): 7})
    assert lag_samples("lagtest") == {("t.events", "0"): 5, ("t.events", "1"): 7}
    metrics.set_consumer_lag("lagtest", {("t.events", 1): 3, ("t.events", 2): -2})
    assert lag_samples("lagtest") == {("t.events", "1"): 3, ("t.events", "2"): 0}
    metrics.set_consumer_lag("lagtest", {})
    assert lag_samples("lagtest") == {}
    assert lag_samples("lagtest-other") == {("t.events", "0"): 4}


def test_a_new_assignment_leaves_only_the_kept_partitions_in_every_per_partition_gauge() -> None:
    """Whichever per-partition gauge the processor sets (those of today and any added later),
    after a rebalance it exports only the partitions it kept, so that two workers never both
    report one; the sender's lag is not the processor's to remove."""
    gauges = {
        name: metric
        for name, metric in nudge_metrics().items()
        if isinstance(metric, Gauge) and "partition" in metric._labelnames
    }
    assert {"PENDING_TIMERS", "TABLE_KEYS", "CONSUMER_LAG"} <= gauges.keys()

    def labels(gauge: Gauge, service: str, partition: int) -> dict[str, str]:
        special = {"service": service, "partition": str(partition)}
        return {name: special.get(name, "t.events") for name in gauge._labelnames}

    for gauge in gauges.values():
        for partition in (41, 42):
            gauge.labels(**labels(gauge, "processor", partition)).set(1)
        if "service" in gauge._labelnames:
            gauge.labels(**labels(gauge, "sender", 41)).set(1)
    metrics.keep_partition_gauges({42})
    left = {
        (name, sample.labels.get("service", "processor"), sample.labels["partition"])
        for name, gauge in gauges.items()
        for family in gauge.collect()
        for sample in family.samples
        if sample.labels["partition"] in {"41", "42"}
    }
    assert left == {(name, "processor", "42") for name in gauges} | {
        ("CONSUMER_LAG", "sender", "41")
    }


@dataclass(frozen=True)
class FakeTP:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    """A recording stand-in for AIOKafkaConsumer's offset API."""

    highwaters: dict[FakeTP, int | None]
    committed_offsets: dict[FakeTP, int | None]
    positions: dict[FakeTP, int]

    def assignment(self) -> set[FakeTP]:
        return set(self.highwaters)

    def highwater(self, partition: FakeTP) -> int | None:
        return self.highwaters[partition]

    async def committed(self, partition: FakeTP) -> int | None:
        return self.committed_offsets.get(partition)

    async def position(self, partition: FakeTP) -> int:
        return self.positions[partition]


async def test_sample_consumer_lag_reads_committed_then_position() -> None:
    """Lag is end minus committed; the position stands in before the first commit; unknown ends
    are skipped."""
    p0, p1, p2 = FakeTP("s.cmds", 0), FakeTP("s.cmds", 1), FakeTP("s.cmds", 2)
    consumer = FakeConsumer(
        highwaters={p0: 100, p1: 50, p2: None},
        committed_offsets={p0: 90, p1: None},
        positions={p0: 95, p1: 45, p2: 0},
    )
    await metrics.sample_consumer_lag("samplertest", consumer)
    assert lag_samples("samplertest") == {("s.cmds", "0"): 10, ("s.cmds", "1"): 5}


def test_counter_children_count_into_the_series_labels_names() -> None:
    """A child looked up once and kept counts into the same series as `labels(...)` each time."""
    children = metrics.CounterChildren(metrics.DELIVERIES)
    labels = {"status": "sent", "journey": "j-children", "step": "s", "variant": "none"}
    before = metrics.DELIVERIES.labels(**labels)._value.get()
    children("sent", "j-children", "s", "none").inc()
    children("sent", "j-children", "s", "none").inc()
    assert children("sent", "j-children", "s", "none") is metrics.DELIVERIES.labels(**labels)
    assert metrics.DELIVERIES.labels(**labels)._value.get() == before + 2
