"""`make bench-e2e`: end-to-end latency of transactional mail under a steady event load.

An `order.completed` is published → the processor decides → the sender renders and sends → the
SMTP sink answers 250. Latency = the sink's acceptance time minus the publish time (one clock:
publisher and sink live in this process; the processor and sender are real `nudge` processes).
The load is a steady `--rate` events/s (default 1,000; 250 and 500 are measured first, on the
same stack, each drained before the next) for `--seconds` (default 30) after a `--warmup`
(default 5 s, not counted). `--order-share` (default 10 %) are orders from new users; the rest
are product views of 5,000 browsing users (they arm timers, which at delay scale 1 do not fire
during the run). A backlog is waited out (up to 240 s), so a slow pipeline shows as latency.
Each order's mail is found by its idempotency key, computed with the product's own engine.

Baseline, measured in the same run: a plain aiokafka produce → consume loop at the same rate
(the floor any Kafka-based pipeline pays). Results: results/e2e.json, a table on stdout.
Target (issue 8): p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from methods import median, percentile  # bench/methods.py (this directory)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the chaos package holds the stack and the recording sink

from chaos.stack import RecordingSink, Stack, free_port  # noqa: E402

from nudge.admin import ensure_topics  # noqa: E402
from nudge.codec import decode_event  # noqa: E402
from nudge.journeys import Engine, load_journeys  # noqa: E402
from nudge.sender.sink import Faults  # noqa: E402
from nudge.settings import SHIPPED_JOURNEYS, Settings  # noqa: E402
from nudge.testkafka import read_topic  # noqa: E402
from nudge.topics import Topics  # noqa: E402

TARGET_P99_MS = 250.0


def percentiles(values: list[float], total: int | None = None) -> dict[str, float | int | None]:
    """p50 (the median), p95, p99 (nearest rank) and max, in ms; with `total`, the mails that
    never arrived count as infinitely late (a percentile that falls among them is None)."""
    if not values:
        return {"count": 0}

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 1)

    complete = total is None or len(values) >= total
    return {
        "count": len(values),
        "p50_ms": ms(median(values, total=total)),
        "p95_ms": ms(percentile(values, 0.95, total=total)),
        "p99_ms": ms(percentile(values, 0.99, total=total)),
        "max_ms": ms(max(values)) if complete else None,
    }


async def paced(rate: float, seconds: float, emit: Any) -> float:
    """Call `emit(i)` `rate` times a second for `seconds`, in 10 ms ticks; returns the rate kept."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    total = int(rate * seconds)
    sent = 0
    while sent < total:
        due = min(total, int((loop.time() - started) * rate) + 1)
        while sent < due:
            await emit(sent)
            sent += 1
        await asyncio.sleep(0.01)
    return sent / (loop.time() - started)


async def raw_kafka(bootstrap: str, topic: str, rate: float, seconds: float) -> dict[str, Any]:
    """Produce → consume latency of a plain aiokafka loop at the same rate (the baseline)."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_partitions=4)
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest"
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await consumer.start()
    await producer.start()
    latencies: list[float] = []

    async def consume() -> None:
        async for record in consumer:
            latencies.append(time.time() - orjson.loads(record.value)["t"])

    reader = asyncio.create_task(consume())
    try:
        for _ in range(100):  # the assignment follows the topic's metadata
            if consumer.assignment():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)

        async def emit(i: int) -> None:
            value = orjson.dumps({"i": i, "t": time.time(), "pad": "x" * 300})
            await producer.send(topic, value, key=f"u-{i % 5000}".encode())

        kept = await paced(rate, seconds, emit)
        await producer.flush()
        await asyncio.sleep(2.0)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await producer.stop()
        await consumer.stop()
    skip = int(len(latencies) * 0.1)  # the first second or so warms connections
    return {"rate_kept": round(kept, 1), **percentiles(latencies[skip:])}


def order(i: int, now: str) -> bytes:
    user = f"u-o-{i:07d}"
    items = [{"product_id": "p-7", "name": "急須", "price": 5400, "quantity": 1}]
    return orjson.dumps(
        {
            "event_id": f"e2e-o-{i}",
            "type": "order.completed",
            "user_id": user,
            "occurred_at": now,
            "properties": {"order_id": f"o-{i}", "total": 5400, "currency": "JPY", "items": items},
            "user": {"email": f"{user}@example.com", "name": "山田 花子", "locale": "ja"},
        }
    )


def view(i: int, now: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e2e-v-{i}",
            "type": "product.viewed",
            "user_id": f"u-b-{i % 5000:05d}",
            "occurred_at": now,
            "properties": {"product_id": f"p-{i % 97}"},
        }
    )


async def end_to_end(
    args: argparse.Namespace, bootstrap: str, work: Path, rates: list[float]
) -> list[dict[str, Any]]:
    """One stack; one phase per rate (ascending), each drained before the next starts."""
    prefix = f"bench-e2e-{uuid.uuid4().hex[:8]}."
    engine = Engine(load_journeys(SHIPPED_JOURNEYS), delay_scale=1.0)
    sink = RecordingSink(port=free_port(), faults=Faults())
    await sink.start()
    stack = Stack(
        workdir=work,
        bootstrap=bootstrap,
        prefix=prefix,
        smtp_port=sink.port,
        delay_scale=1.0,
        journeys=SHIPPED_JOURNEYS,
        partitions=args.partitions,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all")
    phases: list[dict[str, Any]] = []
    try:
        await ensure_topics(
            Settings(
                kafka_bootstrap_servers=bootstrap,
                topic_prefix=prefix,
                topic_partitions=args.partitions,
            )
        )
        for name in ("processor", "sender"):
            stack.start(name)
        for name in ("processor", "sender"):
            await stack.wait_ready(name, 180)
        await producer.start()
        topic = Topics(prefix).events
        every = max(1, round(1 / args.order_share))
        offset = 0
        for rate in rates:
            print(
                f"  phase {rate:.0f} events/s: {args.warmup:.0f}+{args.seconds:.0f} s", flush=True
            )
            published: dict[str, tuple[float, bool]] = {}  # key -> (publish time, counted)
            begun = time.monotonic()

            # Defaults bind this phase's values (a closure in a loop would see the last ones).
            async def emit(
                i: int,
                base: int = offset,
                sent: dict[str, tuple[float, bool]] = published,
                begun: float = begun,
            ) -> None:
                i += base
                now = datetime.now(UTC)
                stamp = now.isoformat(timespec="milliseconds")
                if i % every:
                    raw = view(i, stamp)
                    await producer.send(topic, raw, key=orjson.loads(raw)["user_id"].encode())
                    return
                raw = order(i, stamp)
                key = next(
                    c.idempotency_key
                    for c in engine.on_event(None, decode_event(raw), now).commands
                    if c.journey == "order_confirmation"
                )
                sent[key] = (time.time(), time.monotonic() - begun >= args.warmup)
                await producer.send(topic, raw, key=orjson.loads(raw)["user_id"].encode())

            kept = await paced(rate, args.warmup + args.seconds, emit)
            offset += int(rate * (args.warmup + args.seconds)) + 1
            await producer.flush()
            deadline = time.monotonic() + 240  # a backlog drains: late is measured, not lost
            while time.monotonic() < deadline:
                if published.keys() <= sink.unique_keys():
                    break
                await asyncio.sleep(0.25)
            phases.append(await measure(bootstrap, prefix, sink, published, rate, kept))
            print(f"  {json.dumps(phases[-1])}", flush=True)
        return phases
    finally:
        await producer.stop()
        await stack.close()
        await sink.stop()


async def measure(
    bootstrap: str,
    prefix: str,
    sink: RecordingSink,
    published: dict[str, tuple[float, bool]],
    rate: float,
    kept: float,
) -> dict[str, Any]:
    first: dict[str, float] = {}
    for accepted in sink.accepted:
        first.setdefault(accepted.key, accepted.at)
    counted = {k: at for k, (at, c) in published.items() if c}
    latencies = [first[k] - at for k, at in counted.items() if k in first]
    # Where the time goes: publish → command on the topic (processor), → accepted (sender).
    made = {
        orjson.loads(r.value)["idempotency_key"]: r.timestamp_ms / 1000
        for r in await read_topic(bootstrap, Topics(prefix).send_commands)
        if r.value
    }
    processor = [made[k] - at for k, at in counted.items() if k in made]
    sender = [first[k] - made[k] for k in counted if k in first and k in made]
    return {
        "rate": rate,
        "rate_kept": round(kept, 1),
        "orders": len(published),
        "orders_counted": len(counted),
        "mails_missing": sum(1 for key in published if key not in first),
        **percentiles(latencies, total=len(counted)),
        "stages": {
            "publish_to_command": percentiles(processor),
            "command_to_accepted": percentiles(sender),
        },
    }


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    raw_topic = f"bench-e2e-raw-{uuid.uuid4().hex[:8]}"
    print(f"baseline: plain aiokafka produce → consume at {args.rate:.0f}/s for 10 s", flush=True)
    baseline = await raw_kafka(bootstrap, raw_topic, args.rate, 10.0)
    print(json.dumps(baseline), flush=True)
    rates = sorted({*args.also, args.rate})
    print(
        f"nudge: {', '.join(f'{r:.0f}' for r in rates)} events/s ({args.order_share:.0%} orders), "
        f"each {args.warmup:.0f}+{args.seconds:.0f} s, through processor, sender and sink",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        phases = await end_to_end(args, bootstrap, Path(tmp), rates)
    nudge = next(p for p in phases if p["rate"] == args.rate)
    p99 = nudge.get("p99_ms")
    return {
        "benchmark": "e2e",
        "command": "make bench-e2e  # python bench/bench_e2e.py " + " ".join(sys.argv[1:]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rate_events_per_second": args.rate,
        "order_share": args.order_share,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "nudge": nudge,
        "phases": phases,
        "baseline_raw_kafka": baseline,
        "p99_vs_raw_kafka": (
            round(p99 / baseline["p99_ms"], 1) if p99 and baseline.get("p99_ms") else None
        ),
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(
            p99 is not None and p99 < TARGET_P99_MS and not nudge["mails_missing"]
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second (headline)")
    parser.add_argument(
        "--also",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[250.0, 500.0],
        help="further rates measured first, comma-separated (default 250,500; '' for none)",
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds not counted")
    parser.add_argument("--order-share", type=float, default=0.1, help="share of orders")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "e2e.json")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{'':34}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}  missing")
    rows = [(f"nudge @{p['rate']:.0f}/s order → mail", p) for p in result["phases"]]
    rows.append((f"raw aiokafka @{args.rate:.0f}/s", result["baseline_raw_kafka"]))
    for label, row in rows:
        cells = "".join(f"{row.get(k, '-')!s:>9}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))
        print(f"{label:34}{cells}  {row.get('mails_missing', '')}")
    print(
        f"target p99 < {TARGET_P99_MS:.0f} ms at {args.rate:.0f} events/s: "
        f"{'met' if result['meets_target'] else 'NOT met'}; wrote {args.results}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
