"""Every Prometheus metric Nudge exposes, in one place, with fixed label sets.

Names follow Prometheus conventions: the `nudge_` prefix, base units (seconds, bytes), `_total`
for counters. Label values come from closed sets (event types are folded to `other` when unknown,
reasons are short codes), so cardinality is bounded. Faust's own sensor (milliseconds, no prefix)
is not exposed.

Label conventions: `variant` is `none` when a journey has no A/B split; `partition` is the Kafka
partition number as text; `service` is `processor`, `sender` or `web`. The alert rules in
deploy/prometheus/alerts.yml and the dashboard in deploy/grafana/ read these names: rename one and
update them (`make check-deploy` checks the rules, tests/unit/test_metrics.py the names).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Set
from typing import Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

from nudge import __version__

# A `_created` series per labelled child doubles the series count for a timestamp nobody graphs.
# It is read when each metric is constructed, so this must run before the definitions below.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

NO_VARIANT = "none"
"""The `variant` label value of a mail that belongs to no A/B split."""

# Every process ------------------------------------------------------------------------------
BUILD_INFO = Info(
    "nudge_build", "Version of Nudge running in this process, and which service it is."
)

READY = Gauge(
    "nudge_ready",
    "1 while the process would answer /readyz with 200 (joined, recovered, not rebalancing).",
    ["service"],
)

# Processor -----------------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "nudge_events_consumed_total", "Behaviour events read from the events topic, by type.", ["type"]
)
EVENTS_IGNORED = Counter(
    "nudge_events_ignored_total",
    "Events read but not acted on, by reason (unknown_type, duplicate_event, before_deletion).",
    ["reason"],
)
DEAD_LETTERED = Counter(
    "nudge_dead_lettered_total",
    "Records sent to a dead-letter topic, by source topic kind and reason.",
    ["source", "reason"],
)
COMMANDS_EMITTED = Counter(
    "nudge_commands_emitted_total",
    "Send commands produced, by journey, step and variant.",
    ["journey", "step", "variant"],
)
NOT_SENT = Counter(
    "nudge_not_sent_total",
    "Journey steps that sent nothing, by journey, step and reason (no_consent, stale, ...).",
    ["journey", "step", "reason"],
)
TIMER_LAG = Histogram(
    "nudge_timer_lag_seconds",
    "Delay from a timer's due time to the moment it fired.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
PENDING_TIMERS = Gauge(
    "nudge_pending_timers", "Users with a pending wake-up, per partition.", ["partition"]
)
TABLE_KEYS = Gauge(
    "nudge_table_keys", "Users held in the state table, per partition.", ["partition"]
)
CONSUMER_LAG = Gauge(
    "nudge_consumer_lag_messages",
    "Messages between the committed offset and the end of each assigned partition.",
    ["service", "topic", "partition"],
)
EVENT_PROCESSING = Histogram(
    "nudge_event_processing_seconds",
    "Time to decode, decide and emit for one event.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
PROCESSING_ERRORS = Counter(
    "nudge_processing_errors_total",
    "Records or timers that failed on a bug rather than on bad input (logged with traceback), "
    "by source: the processor's events, deliveries and ticks, the sender's send-commands.",
    ["source"],
)
OFFSET_HOLES = Counter(
    "nudge_offset_holes_total",
    "Records of a partition that reached the processor past ones it never saw (offsetwatch.py), "
    "by source topic and action: read_again (held back, the partition read again from the "
    "hole), accepted (the same hole came back after reading again: taken as the log's own, "
    "retention or a transaction marker), reported (Faust's own paths: handled anyway).",
    ["source", "action"],
)

WITHDRAWALS = Counter(
    "nudge_withdrawals_total",
    "Journeys whose mail, made within its grace, was withdrawn from the sender because an exit "
    "(an order, an emptied cart, that product put in the cart) or a restart (activity, for "
    "win-back) made it moot, by journey (contact-policy records, nudge.policy).",
    ["journey"],
)

# Sender --------------------------------------------------------------------------------------
SMTP_ATTEMPTS = Counter(
    "nudge_smtp_attempts_total",
    "SMTP delivery attempts, by result class (sent, deferred, bounced, failed, connection_error).",
    ["result"],
)
SEND_LATENCY = Histogram(
    "nudge_send_duration_seconds",
    "Time to deliver one message over SMTP, from taking a connection to the reply.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DELIVERIES = Counter(
    "nudge_deliveries_total",
    "Delivery records written, by status, journey, step and variant.",
    ["status", "journey", "step", "variant"],
)
SENDER_SUPPRESSED = Counter(
    "nudge_sender_suppressed_total",
    "Commands the sender's last check stopped (delivery status suppressed), by journey and "
    "reason: suppressed_address, user_deleted, no_marketing_consent, exited (withdrawn by the "
    "processor), quiet_hours, stale.",
    ["journey", "reason"],
)
THROTTLE_WAIT = Counter(
    "nudge_sender_throttle_wait_seconds_total",
    "Seconds mails waited for their recipient domain's throttle, by configured domain and kind: "
    "rate (its token bucket) or sessions (its cap of SMTP transactions at once). Its rate is "
    "the mean number of mails waiting.",
    ["domain", "kind"],
)
RETRIES = Counter("nudge_send_retries_total", "Deliveries scheduled for another attempt.")
SUPPRESSIONS = Counter(
    "nudge_suppressions_total",
    "Addresses newly suppressed, by reason (bounce: a permanent address failure, 5.1.x).",
    ["reason"],
)
SMTP_POOL_IN_USE = Gauge("nudge_smtp_pool_connections_in_use", "SMTP connections lent out now.")
SMTP_POOL_OPEN = Gauge("nudge_smtp_pool_connections_open", "SMTP connections open now.")
SENDER_AMBIGUOUS_KEYS = Gauge(
    "nudge_sender_ambiguous_keys",
    "Idempotency keys found 'sending' at start: handed to SMTP, reply never recorded (resent).",
)
SENDER_IN_FLIGHT = Gauge("nudge_sender_in_flight", "Send commands being processed now.")

# The loop: engagement and conversion ---------------------------------------------------------
OPENS = Counter(
    "nudge_opens_total",
    "Tracked opens, by journey, step and variant.",
    ["journey", "step", "variant"],
)
CLICKS = Counter(
    "nudge_clicks_total",
    "Tracked clicks, by journey, step and variant.",
    ["journey", "step", "variant"],
)
UNSUBSCRIBES = Counter(
    "nudge_unsubscribes_total",
    "Unsubscribes, by journey, step and variant of the mail used.",
    ["journey", "step", "variant"],
)
CONVERSIONS = Counter(
    "nudge_conversions_total",
    "Orders within 7 days of a marketing mail, by that mail's journey, step and variant.",
    ["journey", "step", "variant"],
)
REVENUE = Counter(
    "nudge_conversion_revenue_total",
    "Order totals attributed to a marketing mail, by journey, step, variant and currency.",
    ["journey", "step", "variant", "currency"],
)
HOLDOUT_CONVERSIONS = Counter(
    "nudge_holdout_conversions_total",
    "Orders by holdout users within 7 days of the mail they would have received.",
    ["journey", "step"],
)
HTTP_REQUESTS = Counter(
    "nudge_http_requests_total",
    "Requests to the link endpoints, by route and status.",
    ["route", "status"],
)
HTTP_LATENCY = Histogram(
    "nudge_http_request_duration_seconds",
    "Time to answer one request to the link endpoints, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LINK_EVENTS_LOST = Counter(
    "nudge_link_events_lost_total",
    "Open/click events the link service could not publish (Kafka slow or down), by event type.",
    ["type"],
)


class CounterChildren:
    """The children of a labelled counter by their label values (in the label names' order),
    each looked up in the counter once: `labels()` validates and locks on every call, about
    1.2 µs, and the sender counted two per mail that way (docs/sender.md, Performance)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[tuple[str, ...], Counter] = {}

    def __call__(self, *values: str) -> Counter:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._counter.labels(*values)
        return child


def set_consumer_lag(service: str, lags: Mapping[tuple[str, int], int]) -> None:
    """Report `nudge_consumer_lag_messages` for the partitions `service` holds now.

    `lags` maps (topic, partition) to end offset minus committed (or current) position, for the
    partitions currently assigned; call it every few seconds. A partition reported before and
    missing now (revoked in a rebalance) loses its series, so two workers never both report it
    and the alert's sum stays right. Negative values (offsets read at different moments) count 0.
    """
    current = {(topic, str(partition)): max(lag, 0) for (topic, partition), lag in lags.items()}
    for (topic, partition), lag in current.items():
        CONSUMER_LAG.labels(service=service, topic=topic, partition=partition).set(lag)
    _remove_series(
        CONSUMER_LAG,
        lambda labels: (
            labels["service"] == service and (labels["topic"], labels["partition"]) not in current
        ),
    )


def keep_partition_gauges(partitions: Set[int]) -> None:
    """Remove the processor's per-partition series (`nudge_pending_timers`, `nudge_table_keys`
    and its `nudge_consumer_lag_messages` on every topic) of every partition not in `partitions`
    (its assignment after a rebalance): the worker that took a revoked partition over reports it
    now, and a stale copy here would count it twice in every sum."""
    keep = {str(partition) for partition in partitions}
    _remove_series(PENDING_TIMERS, lambda labels: labels["partition"] not in keep)
    _remove_series(TABLE_KEYS, lambda labels: labels["partition"] not in keep)
    _remove_series(
        CONSUMER_LAG,
        lambda labels: labels["service"] == "processor" and labels["partition"] not in keep,
    )


def _remove_series(gauge: Gauge, stale: Callable[[Mapping[str, str]], bool]) -> None:
    """Remove every series of `gauge` whose labels `stale` picks.

    The series are read back from the gauge rather than remembered where they were set: one rule
    for every per-partition gauge, whichever code path set a series.
    """
    for family in gauge.collect():
        for sample in family.samples:
            if stale(sample.labels):
                # A gauge's sample carries exactly its label names, in their declared order.
                gauge.remove(*sample.labels.values())


class TopicPartitionLike(Protocol):
    """aiokafka's `TopicPartition` (and Faust's `TP`): a topic name and a partition number."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


TP = TypeVar("TP", bound=TopicPartitionLike)


class LagSource(Protocol[TP]):
    """What `sample_consumer_lag` needs of a consumer; `aiokafka.AIOKafkaConsumer` has it all."""

    def assignment(self) -> Set[TP]: ...

    def highwater(self, partition: TP, /) -> int | None: ...

    def committed(self, partition: TP, /) -> Awaitable[int | None]: ...

    def position(self, partition: TP, /) -> Awaitable[int]: ...


async def sample_consumer_lag(service: str, consumer: LagSource[TP]) -> None:
    """Measure and report the lag of each assigned partition: end offset minus committed offset
    (the position when nothing is committed yet). Call it every few seconds beside the consumer
    loop; partitions whose end offset is not known yet (no fetch so far) are left out."""
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        if end is None:
            continue
        done = await consumer.committed(tp)
        if done is None:
            done = await consumer.position(tp)
        lags[(tp.topic, tp.partition)] = end - done
    set_consumer_lag(service, lags)


def describe_process(service: str) -> None:
    """Set `nudge_build_info{service, version}`; each entry point calls it once at start."""
    BUILD_INFO.info({"service": service, "version": __version__})


def report_readiness(service: str, ready: Callable[[], bool]) -> None:
    """`nudge_ready{service}` from `ready` at every scrape, so that a process stuck not ready (a
    recovery that makes no progress, a group it cannot join) shows, and alerts, however quiet
    its traffic. A `ready` that raises counts as not ready: the scrape must not fail."""

    def sample() -> float:
        try:
            return 1.0 if ready() else 0.0
        except Exception:
            return 0.0

    READY.labels(service).set_function(sample)


def exposition() -> tuple[bytes, str]:
    """The body and content type of a `/metrics` answer for this process (text format 0.0.4)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
