"""The processor's record handler with the real engine, in process, without Kafka or Faust.

`make bench-handler`: what one worker could do if consuming, producing and the state table cost
nothing. Set beside `make bench-processor`'s live figure, it shows how much of a worker's time the
engine and handler take and how much Faust and Kafka do. Writes results/handler.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import orjson

from nudge import journeys
from nudge.journeys import Engine, load_journeys
from nudge.processor.engine_codec import EngineCodec
from nudge.processor.handler import HandlerConfig, RecordHandler
from nudge.processor.ports import Record
from nudge.processor.testing import FakeClock, MemoryStore, RecordingSink
from nudge.processor.timers import DueIndex, TickPlanner
from nudge.settings import SHIPPED_JOURNEYS
from nudge.topics import Topics

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def records(path: Path, topics: Topics) -> tuple[list[Record], datetime]:
    lines = path.read_bytes().splitlines()
    out = []
    for offset, line in enumerate(lines):
        key = orjson.loads(line)["user_id"].encode()
        out.append(
            Record(
                topic=topics.events,
                partition=hash(key) % PARTITIONS,
                offset=offset,
                key=key,
                value=line,
            )
        )
    return out, datetime.fromisoformat(orjson.loads(lines[-1])["occurred_at"])


async def drive(handler: RecordHandler, batch: list[Record], size: int) -> None:
    for start in range(0, len(batch), size):
        await handler.handle_batch(batch[start : start + size])


def run_once(path: Path, batch_size: int) -> dict[str, float]:
    topics = Topics("bench.")
    batch, last = records(path, topics)
    sink = RecordingSink()
    handler = RecordHandler(
        config=HandlerConfig(topics=topics),
        engine=Engine(load_journeys(SHIPPED_JOURNEYS)),
        codec=EngineCodec(journeys),
        store=MemoryStore(),
        sink=sink,
        # The clock stands at the log's last event: one "now" for the whole run, as in a backlog.
        clock=FakeClock(last),
        index=DueIndex(),
        planner=TickPlanner(resend_after=5.0),
        assigned=lambda: set(range(PARTITIONS)),
    )
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(drive(handler, batch, batch_size))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events": len(batch),
        "events_per_s": len(batch) / wall,
        "events_per_cpu_s": len(batch) / cpu,
        "outputs": len(sink.outputs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "handler.json")
    args = parser.parse_args()
    log = ROOT / "out" / "bench" / f"handler-{args.users}u-{args.days}d.jsonl"
    if not log.exists():
        log.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 (the project's own CLI)
            [
                str(Path(sys.executable).with_name("nudge")),
                "generate-events",
                "--users",
                str(args.users),
                "--days",
                str(args.days),
                "--seed",
                "7",
                "--out",
                str(log),
            ],
            check=True,
        )
    runs = [run_once(log, args.batch_size) for _ in range(args.repeat)]
    median = sorted(runs, key=lambda r: r["events_per_s"])[len(runs) // 2]
    result = {"benchmark": "handler", "runs": runs, "median": median, "log": str(log)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        f"handler + engine in process: {median['events_per_s']:,.0f} events/s "
        f"({median['events_per_cpu_s']:,.0f} per CPU-second), {median['events']:,} events, "
        f"median of {len(runs)}; {args.out}"
    )


if __name__ == "__main__":
    main()
