"""`make chaos` / `python -m chaos.run [--preset full|small]`: the chaos run and its verdict.

1. Generate the log (`workload`) and the journeys file the run uses; compute the fault-free run
   of that log with `nudge simulate`'s engine (same code as the processor, virtual clock).
2. Start a private broker (full preset; so it can be restarted), an in-process SMTP sink that
   records keys and acceptance times, and the processor workers (two in the full preset, one
   consumer group) and the sender as real processes.
3. Publish the log at a steady rate while the injector SIGKILLs and restarts processor workers
   (in turn) and the sender, takes the SMTP server down, makes it answer 451/421, and restarts
   the broker.
4. Wait (bounded) until every expected mail arrived, let late duplicates land, read the
   send-commands and dead-letter topics, and judge (`verdict`). Prints one verdict line;
   exit 0 only on PASS. Results: results/chaos.json (or --results).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from chaos import faults as faults_mod
from chaos.faults import Injector, schedule
from chaos.stack import ROOT, Broker, RecordingSink, Stack
from chaos.topics import Publisher
from chaos.verdict import Evidence, Verdict, judge
from chaos.workload import HOSTILE_ORDER_USER, chaos_journeys, generate
from nudge.admin import ensure_topics
from nudge.codec import decode_event
from nudge.deadletter import read_headers
from nudge.errors import NudgeError
from nudge.journeys import Engine, load_journeys
from nudge.journeys.simulate import simulate
from nudge.sender.sink import Faults
from nudge.settings import Settings
from nudge.testing import free_port
from nudge.testkafka import read_topic
from nudge.topics import Topics


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    users: int
    events: int
    rate: float  # events per second published
    seed: int = 8
    delay_scale: float = 0.001
    partitions: int = 4
    processors: int = 1  # processor workers in one consumer group
    processor_kills: int = 3
    sender_kills: int = 3
    smtp_down: bool = True
    smtp_flaky: bool = True
    broker_restart: bool = True
    own_broker: bool = True
    broker_port: int = 19092
    smtp_down_seconds: float = 30.0
    flaky_seconds: float = 20.0
    flaky_451_ratio: float = 0.2
    flaky_421_ratio: float = 0.05
    deadline_seconds: float = 1500.0  # the whole run, from the first start
    settle_seconds: float = 10.0  # after the last expected mail: room for late duplicates


PRESETS = {
    # Issue 8: 100,000 events for 20,000 users; 3+3 SIGKILLs, SMTP down 30 s, 451/421 for a
    # while, one broker restart (a private broker on 19092), 1 % malformed + hostile records.
    # Two processor workers share the partitions, as a scaled-out deployment does: every kill
    # and restart is a rebalance, with the other worker recovering the victim's state.
    "full": Plan(users=20_000, events=100_000, rate=500.0, processors=2),
    # The slice inside `make test`: small, quick, on the shared broker, no broker restart; two
    # workers too, so that every CI run kills one mid-stream and rebalances.
    "small": Plan(
        users=400,
        events=2_000,
        rate=100.0,
        delay_scale=0.0002,
        partitions=2,
        processors=2,
        processor_kills=1,
        sender_kills=1,
        smtp_down=False,
        smtp_flaky=True,
        flaky_seconds=6.0,
        flaky_451_ratio=0.5,
        flaky_421_ratio=0.0,
        broker_restart=False,
        own_broker=False,
        deadline_seconds=240.0,
        settle_seconds=4.0,
    ),
}


def reference(
    lines_path: Path, journeys: Path, scale: float
) -> tuple[dict[str, str], dict[str, str]]:
    """The fault-free run: idempotency key -> "journey/step", and key -> `to`, of every command
    `nudge simulate`'s engine emits for the log."""
    engine = Engine(load_journeys(journeys), delay_scale=scale)
    out = io.BytesIO()
    simulate(engine, lines_path, until="+1d", out=out, decisions=None)
    expected: dict[str, str] = {}
    recipients: dict[str, str] = {}
    for raw in out.getvalue().splitlines():
        command = orjson.loads(raw)
        expected[command["idempotency_key"]] = f"{command['journey']}/{command['step']}"
        recipients[command["idempotency_key"]] = command["to"]
    return expected, recipients


async def sender_dead_letters(bootstrap: str, topics: Topics) -> dict[str, str]:
    """Idempotency key -> reason of every command on send-commands-dlt."""
    found: dict[str, str] = {}
    for r in await read_topic(bootstrap, Topics.dead_letter(topics.send_commands)):
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
            key = orjson.loads(r.value or b"")["idempotency_key"]
            found[key] = read_headers(r.headers).get("nudge-error-reason", "")
    return found


def invalid_lines(lines: list[bytes]) -> dict[bytes, str]:
    """The records the product's own codec rejects, with its reason: each must reach the
    dead-letter topic with that reason."""
    bad: dict[bytes, str] = {}
    for line in lines:
        try:
            decode_event(line)
        except NudgeError as err:
            bad[line] = getattr(err, "reason", "")
        except ValueError:
            bad[line] = ""
    return bad


async def execute(
    plan: Plan, workdir: Path, *, bootstrap: str | None = None, say: Any = print
) -> Verdict:
    """One chaos run; returns the verdict (details hold everything results/chaos.json says)."""
    started = time.time()
    deadline = time.monotonic() + plan.deadline_seconds
    run_id = uuid.uuid4().hex[:8]
    prefix = f"chaos-{run_id}."
    workload = generate(
        users=plan.users,
        events=plan.events,
        seed=plan.seed,
        start=datetime.now(UTC),
        rate=plan.rate,
    )
    events_path = workload.write(workdir / "events.jsonl")
    journeys = chaos_journeys(workdir / "journeys.yaml")
    expected, recipients = reference(events_path, journeys, plan.delay_scale)
    malformed = invalid_lines(workload.lines)
    intended = set(workload.malformed)
    if not intended <= malformed.keys():
        raise RuntimeError("the workload's malformed records are not all invalid: fix workload.py")
    say(
        f"chaos {prefix} {len(workload.lines)} records, {plan.users} users, "
        f"{len(malformed)} invalid, {len(expected)} mails expected (fault-free run); "
        f"logs in {workdir}"
    )

    broker: Broker | None = None
    stack: Stack | None = None
    sink = RecordingSink(port=free_port(), faults=Faults(seed=plan.seed))
    tasks: list[asyncio.Task[Any]] = []
    try:
        if plan.own_broker:
            broker = Broker(plan.broker_port, ROOT / ".cache" / "kafka-chaos")
            say(f"starting a private broker on {broker.bootstrap}")
            await broker.start(fresh=True)
            bootstrap = broker.bootstrap
        bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        await sink.start()
        stack = Stack(
            workdir=workdir,
            bootstrap=bootstrap,
            prefix=prefix,
            smtp_port=sink.port,
            delay_scale=plan.delay_scale,
            journeys=journeys,
            partitions=plan.partitions,
        )
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            topic_prefix=prefix,
            topic_partitions=plan.partitions,
        )
        await ensure_topics(settings)
        processors = processor_names(plan.processors)
        for name in processors:
            stack.start(name, command="processor")
        stack.start("sender")
        services = (*processors, "sender")
        for name in services:
            took = await stack.wait_ready(name, 180)
            say(f"{name} ready in {took:.1f} s")

        topics = Topics(prefix)
        publisher = Publisher(bootstrap, topics.events, workload.lines, plan.rate)
        injector = Injector(
            stack,
            sink,
            publisher,
            broker,
            faults_mod.Settings(
                processors=processors,
                smtp_down_seconds=plan.smtp_down_seconds,
                flaky_seconds=plan.flaky_seconds,
                flaky_451_ratio=plan.flaky_451_ratio,
                flaky_421_ratio=plan.flaky_421_ratio,
            ),
            say,
        )
        plan_faults = schedule(
            seed=plan.seed,
            processor_kills=plan.processor_kills,
            sender_kills=plan.sender_kills,
            smtp_down=plan.smtp_down,
            smtp_flaky=plan.smtp_flaky,
            broker_restart=plan.broker_restart and broker is not None,
        )
        say("fault plan: " + ", ".join(f"{p.kind}@{p.progress:.0%}" for p in plan_faults))
        publishing = asyncio.create_task(publisher.run())
        injecting = asyncio.create_task(injector.run(plan_faults))
        tasks += [publishing, injecting, asyncio.create_task(injector.supervise())]

        async def report() -> None:
            while True:
                await asyncio.sleep(10)
                got = len(sink.unique_keys() & expected.keys())
                say(
                    f"  {time.time() - started:5.0f} s: published {publisher.sent}/"
                    f"{len(workload.lines)}, mails {got}/{len(expected)} "
                    f"(accepted {len(sink.accepted)}), faults {len(injector.faults)}"
                )

        tasks.append(asyncio.create_task(report()))
        remaining = max(1.0, deadline - time.monotonic())
        done, _ = await asyncio.wait({publishing, injecting}, timeout=remaining)
        for task in done:
            task.result()  # a bug in the harness should say so, not look like a product failure
        if not injecting.done():  # out of time mid-fault: end it so the services can be judged
            injecting.cancel()
            await asyncio.gather(injecting, return_exceptions=True)
            if not sink.listening:
                await sink.up()
        dlt_checked = time.monotonic()
        while time.monotonic() < deadline:
            missing = expected.keys() - sink.unique_keys()
            if not missing:
                break
            if time.monotonic() - dlt_checked > 10:  # dead-lettered mail will not come: stop
                dlt_checked = time.monotonic()
                if missing <= (await sender_dead_letters(bootstrap, topics)).keys():
                    break
            await asyncio.sleep(0.5)
        complete_at = time.time() - started
        await asyncio.sleep(min(plan.settle_seconds, max(0.0, deadline - time.monotonic())))
        ready = {name: await stack.ready(name) for name in services}
        tasks[2].cancel()  # the supervisor: a service stopped from here on is not a fault

        commands = await read_topic(bootstrap, topics.send_commands)
        emitted = Counter(orjson.loads(r.value)["idempotency_key"] for r in commands if r.value)
        sender_dlt = await sender_dead_letters(bootstrap, topics)
        events_dlt = [
            (r.value, read_headers(r.headers).get("nudge-error-reason", ""))
            for r in await read_topic(bootstrap, Topics.dead_letter(topics.events))
        ]
        verdict = judge(
            Evidence(
                expected=expected,
                emitted=emitted,
                sender_dlt=sender_dlt,
                accepted=list(sink.accepted),
                events_dlt=events_dlt,
                malformed=list(malformed),
                malformed_reasons=malformed,
                faults=sorted(injector.faults, key=lambda f: f.at),
                ready=ready,
                recipients=recipients,
                hostile={k for k, to in recipients.items() if to.startswith(HOSTILE_ORDER_USER)},
                ambiguous=ambiguous_reported(workdir / "logs" / "sender.log"),
                started=started,
            )
        )
        verdict.details.update(
            {
                "plan": asdict(plan),
                "topic_prefix": prefix,
                "records_published": publisher.sent,
                "hostile_users": len(workload.hostile_users),
                "mails_complete_after_s": round(complete_at, 1),
                "duration_s": round(time.time() - started, 1),
                "recovery_s": injector.recovery,
                "sink": {
                    "accepted": sink.count,
                    "refused_4xx": sink.deferred,
                    "connections": sink.connections,
                },
                "expected_by_step": dict(Counter(expected.values())),
                "logs": str(workdir),
            }
        )
        return verdict
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if stack is not None:
            await stack.close()
        await sink.stop()
        if broker is not None:
            await broker.stop()


async def interruptible(run: Any) -> Verdict:
    """Ctrl-C and SIGTERM cancel the run, so its `finally` stops every process it started."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 (always inside a task here)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    result: Verdict = await run
    return result


def processor_names(count: int) -> tuple[str, ...]:
    """The processor workers' service names: `processor`, then `processor-2`, `processor-3`…"""
    return ("processor", *(f"processor-{n}" for n in range(2, count + 1)))


def ambiguous_reported(log: Path) -> list[int]:
    """The sender's own count of keys left `sending` by a crash, at each start that had any."""
    counts = []
    with contextlib.suppress(OSError):
        for line in log.read_bytes().splitlines():
            if b"sender.ambiguous_keys" in line:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                    counts.append(int(orjson.loads(line)["count"]))
    return counts


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--events", type=int, help="override the preset's number of records")
    parser.add_argument("--users", type=int, help="override the preset's number of users")
    parser.add_argument("--rate", type=float, help="override the preset's events per second")
    parser.add_argument("--seed", type=int, help="override the preset's seed")
    parser.add_argument(
        "--processors", type=int, help="override the preset's number of processor workers"
    )
    parser.add_argument(
        "--no-faults",
        action="store_true",
        help="the same run without any fault: shows the real stack matches the simulation",
    )
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "chaos.json")
    parser.add_argument("--workdir", type=Path, help="logs and state (default .cache/chaos/…)")
    args = parser.parse_args(argv)
    if args.processors is not None and args.processors < 1:
        parser.error(f"--processors must be at least 1 (got {args.processors})")
    plan = PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in ("events", "users", "rate", "seed", "processors")}
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    if args.no_faults:
        plan = replace(
            plan,
            processor_kills=0,
            sender_kills=0,
            smtp_down=False,
            smtp_flaky=False,
            broker_restart=False,
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    workdir = args.workdir or ROOT / ".cache" / "chaos" / f"{args.preset}-{stamp}"

    def say(text: str) -> None:
        print(f"chaos: {text}", flush=True)

    workdir.mkdir(parents=True, exist_ok=True)
    try:
        verdict = asyncio.run(interruptible(execute(plan, workdir, say=say)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("chaos: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    details = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "preset": args.preset,
        "machine": machine(),
        "verdict": verdict.line,
        **verdict.details,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(details, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: details[k] for k in ("problems", "faults", "samples")}, indent=1))
    print(f"chaos verdict: {verdict.line}")
    print(f"(details: {args.results})")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
