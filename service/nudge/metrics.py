"""Every Prometheus metric Nudge exposes, in one place, with fixed label sets.

Names follow Prometheus conventions: the `nudge_` prefix, base units (seconds, bytes), `_total`
for counters. Label values come from closed sets (event types are folded to `other` when unknown,
reasons are short codes), so cardinality is bounded. Faust's own sensor (milliseconds, no prefix)
is not exposed.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Processor -----------------------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "nudge_events_consumed_total", "Behaviour events read from the events topic, by type.", ["type"]
)
EVENTS_IGNORED = Counter(
    "nudge_events_ignored_total",
    "Events read but not acted on, by reason (unknown_type, duplicate_event).",
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
RETRIES = Counter("nudge_send_retries_total", "Deliveries scheduled for another attempt.")
SUPPRESSIONS = Counter(
    "nudge_suppressions_total",
    "Addresses newly suppressed, by reason (bounce, unsubscribe).",
    ["reason"],
)
SMTP_POOL_IN_USE = Gauge("nudge_smtp_pool_connections_in_use", "SMTP connections lent out now.")
SMTP_POOL_OPEN = Gauge("nudge_smtp_pool_connections_open", "SMTP connections open now.")

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
    "Unsubscribes, by journey and step of the mail used.",
    ["journey", "step"],
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
