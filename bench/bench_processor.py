"""`make bench-processor`: one `nudge processor` worker on the local broker.

Five measurements in one run, each on its own topic prefix:

1. ceiling    — a plain aiokafka loop (consume → `decode_event` → produce) over the same events:
                the most Python does here without state, engine or Faust;
2. throughput — one `nudge processor` (default journeys, RocksDB, at_least_once) draining the
                same pre-published synthetic event log (`nudge generate-events`);
3. timers     — `--timer-users` users each add to their cart at the same event time, so every
                reminder is due at one instant after ingestion; p50/p99/max lag from that instant
                to each command record's timestamp (CreateTime: when the worker's producer took
                the command, before the broker acknowledged it; one clock, this machine's), a
                reminder that never came counting as infinitely late; memory per pending timer
                (process RSS growth over the ingest, and the due index alone with tracemalloc);
4. recovery   — SIGKILL that worker (holding `--timer-users` users of state) and start another:
                seconds until /readyz with the same state directory (RocksDB kept) and with an
                empty one (the table is restored from the changelog topic).

5. crash      — `--crash-users` orders, a worker SIGKILLed half-way and replaced, once with
                at_least_once and once with exactly_once: commands lost, duplicated (same
                idempotency key), and users with two different keys.

Throughput reports events/s and the worker's CPU time per event (user + system, from
/proc/<pid>/stat over the drain: steadier than events/s on a shared machine), each beside the
plain loop's from the same run. The worker's /metrics is sampled every 0.1 s from its start to
the end of the drain; events/s is the events over the time from the first sample showing any
handled to the first showing all (bench/methods.py: `drain`). `--compare-faust-paths`
repeats it with `nudge processor --faust-paths` (Faust's own per-record table writes,
producing, consuming and monitor);
`--profile PATH` records a py-spy profile of the worker during the drain (and PATH.timers.txt
during the timer burst; py-spy is not a project dependency: `pip install py-spy`).

Results go to results/processor.json and stdout; docs/processor.md quotes them.
Usage: python bench/bench_processor.py [--events 60000] [--timer-users 50000] [--crash-users 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from methods import Sample, drain, median, percentile  # bench/methods.py (this directory)

from nudge.admin import ensure_topics
from nudge.codec import decode_event, encode_event
from nudge.errors import InvalidEvent
from nudge.journeys.synth import Plan, generate
from nudge.processor.timers import DueIndex
from nudge.settings import Settings
from nudge.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
NUDGE = str(Path(sys.executable).with_name("nudge"))
WORKER_ARGS: list[str] = []  # extra `nudge processor` options (--worker-args)
DRAIN_POLL_SECONDS = 0.1  # /metrics samples while a backlog drains, the same at both ends
ZONES = ("Asia/Tokyo", "Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Honolulu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def daytime_zone(at: datetime) -> str:
    for name in ZONES:
        if 10 <= at.astimezone(ZoneInfo(name)).hour < 19:
            return name
    return "Asia/Tokyo"


def settings_for(prefix: str, partitions: int) -> Settings:
    return Settings(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        topic_prefix=prefix,
        topic_partitions=partitions,
        token_secret=b"bench",
    )


async def publish(settings: Settings, lines: list[bytes]) -> float:
    """Publish JSONL events keyed by user_id; returns seconds taken."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        linger_ms=20,
        max_batch_size=512 * 1024,
        acks=1,
    )
    await producer.start()
    started = time.monotonic()
    topic = Topics(settings.topic_prefix).events
    try:
        for n, line in enumerate(lines):
            key = orjson.loads(line)["user_id"].encode()
            await producer.send(topic, line, key=key)
            if n % 5000 == 0:
                await asyncio.sleep(0)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - started


async def ceiling(settings: Settings, count: int) -> tuple[float, float]:
    """Events/s of a plain consume → decode → produce loop (no state, no engine), and its CPU
    seconds per event (this process, from the first record to the last acknowledgement)."""
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings, [f"{settings.topic_prefix}ceiling-out"])
    consumer = AIOKafkaConsumer(
        topics.events,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{settings.topic_prefix}ceiling",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5, acks=-1
    )
    await consumer.start()
    await producer.start()
    seen = 0
    started: float | None = None
    cpu = 0.0
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for records in batch.values():
                if started is None:
                    started = time.monotonic()
                    cpu = time.process_time()
                for record in records:
                    seen += 1
                    try:
                        event = decode_event(record.value)
                    except InvalidEvent:
                        continue
                    await producer.send(
                        f"{settings.topic_prefix}ceiling-out", encode_event(event), key=record.key
                    )
        await producer.flush()
        elapsed = time.monotonic() - (started or time.monotonic())
        cpu = time.process_time() - cpu
    finally:
        await consumer.stop()
        await producer.stop()
    return seen / elapsed, cpu / max(1, seen)


class Worker:
    """One `nudge processor` subprocess."""

    def __init__(
        self, prefix: str, partitions: int, state: Path, log: Path, *args: str, **env: str
    ) -> None:
        self.port = free_port()
        full_env = {
            **os.environ,
            "NUDGE_TOPIC_PREFIX": prefix,
            "NUDGE_TOPIC_PARTITIONS": str(partitions),
            "NUDGE_STATE_DIR": str(state),
            "NUDGE_PROCESSOR_PORT": str(self.port),
            "NUDGE_TOKEN_SECRET": "bench",
            "NUDGE_LOG_LEVEL": "WARNING",
            **env,
        }
        self.started = time.monotonic()
        with log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI
                [NUDGE, "processor", "--tick-interval", "0.5", *WORKER_ARGS, *args],
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.port}{path}"
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, ""
        except OSError:
            return 0, ""

    def wait_ready(self, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"processor exited with {self.process.returncode}")
            if self.get("/readyz")[0] == 200:
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise RuntimeError("processor not ready in time")

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def handled(self) -> float:
        return self.metric("nudge_events_consumed_total") + self.metric("nudge_dead_lettered_total")

    def cpu_seconds(self) -> float:
        """User + system CPU time the worker process has used so far (/proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def wait_handled(self, count: int, timeout: float = 1800) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.handled() >= count:
                return time.monotonic()
            if self.process.poll() is not None:
                raise RuntimeError(f"processor exited with {self.process.returncode}")
            time.sleep(0.25)
        raise RuntimeError(f"only {self.handled()} of {count} events handled in time")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def throughput(
    lines: list[bytes],
    partitions: int,
    tmp: Path,
    profile: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    settings = settings_for(f"bench-{uuid.uuid4().hex[:8]}.", partitions)
    publish_s = asyncio.run(publish(settings, lines))
    ceiling_rate, ceiling_cpu = asyncio.run(ceiling(settings, len(lines)))
    name = "tp" + "".join(extra_args).replace("-", "_")
    worker = Worker(
        settings.topic_prefix, partitions, tmp / f"{name}-state", tmp / f"{name}.log", *extra_args
    )
    spy: subprocess.Popen[bytes] | None = None
    samples: list[Sample] = []
    try:
        # /metrics answers from the first second; the clock starts at the first handled event
        # (readiness may come later: it waits for the first tick, queued behind the backlog).
        # One sampling interval throughout: the first sample showing progress and the one
        # showing the backlog done are each late by up to one interval, which then cancels out
        # of the rate (methods.drain); each /metrics scrape costs the worker a little CPU.
        deadline = time.monotonic() + 1800
        while True:
            handled = int(worker.handled())
            samples.append((time.monotonic(), handled, (worker.cpu_seconds(),)))
            if handled >= len(lines):
                break
            if profile is not None and spy is None and handled > 0:
                spy = start_profile(worker.process.pid, profile)
            if worker.process.poll() is not None:
                raise RuntimeError(f"processor exited with {worker.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {handled} of {len(lines)} events handled in time")
            time.sleep(DRAIN_POLL_SECONDS)
        commands = worker.metric("nudge_commands_emitted_total")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        worker.stop()
    figures = drain(samples, baseline=0, items=len(lines))
    cpu_per_event = figures.cpu_per_item[0]
    return {
        "events": len(lines),
        "publish_seconds": round(publish_s, 2),
        "ceiling_events_per_second": round(ceiling_rate, 1),
        "ceiling_cpu_us_per_event": round(ceiling_cpu * 1e6, 1),
        "nudge_events_per_second": round(figures.rate, 1),
        "nudge_steady_events_per_second": round(figures.steady_rate, 1),
        "nudge_vs_ceiling": round(figures.rate / ceiling_rate, 2),
        "nudge_cpu_us_per_event": round(cpu_per_event * 1e6, 1),
        "nudge_cpu_share": round(figures.cpu_share[0], 2),
        "commands_emitted": int(commands),
        "startup_to_first_event_seconds": round(figures.first - worker.started, 2),
    }


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (installed separately: it is not a project dependency) sampling `pid` until SIGINT."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(  # noqa: S603 - a local profiler on our own child process
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def index_bytes_per_timer(users: int) -> float:
    """Memory of the due index alone (dict + heap entries) per pending timer."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = DueIndex()
    base = time.time()
    index.load(((f"u-{n:07d}", base + n % 1000, 0) for n in range(users)), {0})
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del index
    return (after - before) / users


async def command_lags(
    settings: Settings, due_ms: int, expected: int, limit_s: float
) -> list[float]:
    """Seconds from `due_ms` to the timestamp of each reminder command's record: the worker's
    producer sets it (CreateTime) when it takes the command, on this machine's clock."""
    topic = Topics(settings.topic_prefix).send_commands
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    lags: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + limit_s
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and len(lags) < expected:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batch:
                quiet_since = time.monotonic()
            elif lags and time.monotonic() - quiet_since > 15:
                break
            for records in batch.values():
                for record in records:
                    if b'"cart_abandonment"' in record.value:
                        lags.append((record.timestamp - due_ms) / 1000)
    finally:
        await consumer.stop()
    return lags


def timer_delay(users: int, rate_hint: float) -> float:
    """Seconds from the cart events' time to the reminders' due time: long enough to publish and
    ingest every user first, with a margin, and no longer (the burst waits for it). A new user
    costs more than an average event (a new state, a contact-policy record): 1,000,000 were
    ingested at 0.69 of the throughput figure (docs/processor.md); budget half, plus half again."""
    ingest_estimate = users / max(rate_hint / 2, 100.0)
    return 30 + 1.5 * ingest_estimate


def last_throughput(path: Path) -> float | None:
    """The worker's events/s from an earlier run's results on this machine, if any."""
    try:
        figure = json.loads(path.read_text())["throughput"]["nudge_events_per_second"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(figure) if isinstance(figure, int | float) and figure > 0 else None


def timers_and_recovery(
    users: int,
    partitions: int,
    delay_s: float,
    tmp: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    settings = settings_for(f"bench-{uuid.uuid4().hex[:8]}.", partitions)
    # Every cart event carries the same event time T0: every reminder is due at T0 + delay
    # (60 min x scale), which must outlast publishing and ingesting all users (`timer_delay`).
    scale = delay_s / 3600
    t0 = datetime.now(UTC)
    due = t0 + timedelta(seconds=delay_s)
    zone = daytime_zone(due)
    lines = [
        orjson.dumps(
            {
                "event_id": f"cart-{n}",
                "type": "cart.item_added",
                "user_id": f"t-{n:07d}",
                "occurred_at": t0.isoformat(),
                "properties": {
                    "product_id": "p-9",
                    "name": "Tea set",
                    "price": 4800,
                    "quantity": 1,
                },
                "user": {"email": f"t{n}@example.jp", "timezone": zone, "marketing_consent": True},
            }
        )
        for n in range(users)
    ]
    state = tmp / "timer-state"
    env = {"NUDGE_DELAY_SCALE": repr(scale)}
    worker = Worker(settings.topic_prefix, partitions, state, tmp / "timers.log", **env)
    result: dict[str, Any] = {"users": users, "delay_seconds": round(delay_s, 1)}
    try:
        worker.wait_ready()
        rss_before = worker.rss()
        asyncio.run(publish(settings, lines))
        ingested = worker.wait_handled(users)
        rss_pending = worker.rss()
        time.sleep(6)  # the pending-timers gauge is sampled every 5 s
        pending = worker.metric("nudge_pending_timers")
        result["ingest_seconds"] = round(ingested - worker.started, 1)
        result["pending_timers"] = int(pending)
        result["rss_bytes_per_pending_timer"] = round((rss_pending - rss_before) / users, 1)
        result["due_index_bytes_per_timer"] = round(index_bytes_per_timer(min(users, 200_000)), 1)
        remaining = (due - datetime.now(UTC)).total_seconds()
        result["seconds_between_ingest_end_and_due"] = round(remaining, 1)
        if remaining < 0:
            result["warning"] = "ingest outlasted the delay: lags include ingest time"
        time.sleep(max(0.0, remaining - 1))  # so that the CPU time below is the burst's
        spy = start_profile(worker.process.pid, profile) if profile is not None else None
        cpu_start = worker.cpu_seconds()
        lags = asyncio.run(
            command_lags(settings, int(due.timestamp() * 1000), users, max(remaining, 0) + 600)
        )
        result["burst_cpu_us_per_timer"] = round(
            (worker.cpu_seconds() - cpu_start) / max(1, len(lags)) * 1e6, 1
        )
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        stale = worker.metric('nudge_not_sent_total{journey="cart_abandonment"')
        # Over every user's reminder: one that never came counts as infinitely late, so a p99
        # among the missing ones is None rather than the p99 of those that made it.
        p50, p99 = median(lags, total=users), percentile(lags, 0.99, total=users)
        result.update(
            reminders=len(lags),
            reminders_missing=users - len(lags),
            lag_p50_seconds=None if p50 is None else round(p50, 3),
            lag_p99_seconds=None if p99 is None else round(p99, 3),
            lag_max_seconds=round(max(lags), 3) if len(lags) >= users else None,
            burst_seconds=round(max(lags) - min(lags), 2) if lags else None,
            reminders_per_second=round(len(lags) / max(1e-3, max(lags) - min(lags)), 1)
            if lags
            else None,
            not_sent=int(stale),
        )
        worker.stop(signal.SIGKILL)
        # Recovery 1: same state directory (RocksDB files kept, as a restarted pod with its volume).
        again = Worker(settings.topic_prefix, partitions, state, tmp / "rec1.log", **env)
        result["recovery_same_state_dir_seconds"] = round(again.wait_ready(), 2)
        again.stop(signal.SIGKILL)
        # Recovery 2: empty state directory (a new machine: the table comes from the changelog).
        fresh = Worker(settings.topic_prefix, partitions, tmp / "fresh", tmp / "rec2.log", **env)
        result["recovery_empty_state_dir_seconds"] = round(fresh.wait_ready(), 2)
        fresh.stop()
    finally:
        worker.stop(signal.SIGKILL)
    return result


async def read_commands(settings: Settings, isolation: str) -> list[dict[str, Any]]:
    topic = Topics(settings.topic_prefix).send_commands
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            if not batch:
                break
            for records in batch.values():
                found.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


def crash_check(guarantee: str, users: int, partitions: int, tmp: Path) -> dict[str, Any]:
    """SIGKILL a worker half-way through a backlog of orders; a new worker finishes it. Counts
    confirmations lost, duplicated (same key), and users with two different keys."""
    settings = settings_for(f"bench-{uuid.uuid4().hex[:8]}.", partitions)
    now = datetime.now(UTC).isoformat()
    lines = [
        orjson.dumps(
            {
                "event_id": f"order-{n}",
                "type": "order.completed",
                "user_id": f"c-{n:07d}",
                "occurred_at": now,
                "properties": {"order_id": f"o-{n}", "total": 4800, "currency": "JPY", "items": []},
                "user": {"email": f"c{n}@example.jp"},
            }
        )
        for n in range(users)
    ]
    asyncio.run(publish(settings, lines))
    env = {"NUDGE_PROCESSING_GUARANTEE": guarantee}
    first = Worker(
        settings.topic_prefix,
        partitions,
        tmp / f"crash-{guarantee}-1",
        tmp / f"crash-{guarantee}-1.log",
        **env,
    )
    try:
        first.wait_ready()
        while first.handled() < users // 2:
            time.sleep(0.02)
        first.stop(signal.SIGKILL)
        second = Worker(
            settings.topic_prefix,
            partitions,
            tmp / f"crash-{guarantee}-2",
            tmp / f"crash-{guarantee}-2.log",
            **env,
        )
        try:
            second.wait_ready()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                confirmed = {
                    c["user_id"]
                    for c in asyncio.run(read_commands(settings, "read_committed"))
                    if c["journey"] == "order_confirmation"
                }
                if len(confirmed) >= users:
                    break
                time.sleep(2)
            time.sleep(5)
        finally:
            second.stop()
    finally:
        first.stop(signal.SIGKILL)
    result: dict[str, Any] = {"users": users}
    for isolation in ("read_committed", "read_uncommitted"):
        found = [
            c
            for c in asyncio.run(read_commands(settings, isolation))
            if c["journey"] == "order_confirmation"
        ]
        keys: dict[str, set[str]] = {}
        for command in found:
            keys.setdefault(command["user_id"], set()).add(command["idempotency_key"])
        result[isolation] = {
            "records": len(found),
            "missing_users": users - len(keys),
            "duplicate_records_same_key": len(found) - sum(len(k) for k in keys.values()),
            "users_with_two_keys": sum(1 for k in keys.values() if len(k) > 1),
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="synthetic events (approx.)")
    parser.add_argument("--timer-users", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-timers", action="store_true")
    parser.add_argument(
        "--timer-delay",
        type=float,
        default=None,
        help="seconds from the cart events to the reminders' due time (default: from the "
        "throughput measured in this run, or in results/processor.json with --skip-throughput)",
    )
    parser.add_argument(
        "--crash-users",
        type=int,
        default=3_000,
        help="SIGKILL a worker mid-backlog under both guarantees with this many orders (0: skip)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record a py-spy profile (raw, collapsed stacks) of the worker while it drains",
    )
    parser.add_argument(
        "--compare-faust-paths",
        action="store_true",
        help="also measure a worker with `--faust-paths` (Faust's own per-record paths)",
    )
    parser.add_argument(
        "--worker-args",
        default="",
        help='extra options for every `nudge processor` started, e.g. "--batch-size 1000"',
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "processor.json")
    args = parser.parse_args()
    if args.timer_delay is not None and args.timer_delay <= 0:
        parser.error(f"--timer-delay must be a positive number of seconds (got {args.timer_delay})")
    WORKER_ARGS.extend(args.worker_args.split())
    tmp = Path(tempfile.mkdtemp(prefix="nudge-bench-processor-"))
    results: dict[str, Any] = {
        "benchmark": "processor",
        "command": "make bench-processor  # python bench/bench_processor.py "
        + " ".join(sys.argv[1:]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "partitions": args.partitions,
        "logs": str(tmp),
    }
    rate_hint = last_throughput(ROOT / "results" / "processor.json") or 3000.0
    if not args.skip_throughput:
        plan = Plan(
            users=max(1, args.events // 12),
            days=60,
            seed=7,
            events_per_user=12.0,
            start=datetime.now(UTC) - timedelta(days=60),
        )
        lines = generate(plan)[: args.events]
        print(f"throughput: {len(lines):,} synthetic events, {args.partitions} partitions")
        results["throughput"] = throughput(lines, args.partitions, tmp, args.profile)
        print(json.dumps(results["throughput"], indent=2))
        if args.compare_faust_paths:
            print("throughput with Faust's own per-record paths (--faust-paths), same events")
            old = throughput(lines, args.partitions, tmp, extra_args=("--faust-paths",))
            results["throughput_faust_paths"] = old
            print(json.dumps(old, indent=2))
        rate_hint = results["throughput"]["nudge_events_per_second"]
    if not args.skip_timers:
        print(f"timers: {args.timer_users:,} users with one reminder each, all due at once")
        profile = args.profile.with_suffix(".timers.txt") if args.profile else None
        delay = args.timer_delay or timer_delay(args.timer_users, rate_hint)
        results["timers"] = timers_and_recovery(
            args.timer_users, args.partitions, delay, tmp, profile
        )
        print(json.dumps(results["timers"], indent=2))
    if args.crash_users:
        results["crash"] = {}
        for guarantee in ("at_least_once", "exactly_once"):
            print(f"crash check ({guarantee}): {args.crash_users:,} orders, SIGKILL half-way")
            results["crash"][guarantee] = crash_check(
                guarantee, args.crash_users, args.partitions, tmp
            )
            print(json.dumps(results["crash"][guarantee], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
