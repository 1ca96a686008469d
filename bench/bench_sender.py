"""`make bench-sender`: mails per second from one sender process to a local SMTP sink.

Three measurements in one run, against the same sink (`nudge smtp-sink`, its own process, no
fsync — a sink that syncs every mail measures the disk):

1. ceiling — a raw aiosmtplib client with `--connections` persistent connections sending one
   pre-built message over and over: the most this sink (and a Python client) can take;
2. naive   — a loop opening one aiosmtplib connection per mail (`aiosmtplib.send`), one by one;
3. nudge   — `nudge sender` (one process) consuming pre-published send commands from the real
   Kafka: decode, ledger, render, MIME, SMTP pool, delivery records, commits — everything.

Results go to results/sender.json and a table on stdout; docs/sender.md quotes them.
Usage: python bench/bench_sender.py [--mails 5000] [--ceiling-mails 3000] [--naive-mails 300]
       [--baseline DIR/service] (the same run with another tree's sender: before/after)
       [--rounds 3] (N runs of each sender, alternating order, each between two ceiling
       measurements; the run with the median ratio to its ceilings is reported)
       [--parts] (in-process CPU per call: flattened vs Jinja rendering, pool vs aiosmtplib)
       [--profile FILE] (the sender under cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
from aiokafka import AIOKafkaProducer
from methods import drain  # bench/methods.py: this script's directory is on sys.path

from nudge.admin import ensure_topics
from nudge.codec import encode_command
from nudge.commands import SendCommand
from nudge.sender.compose import compose
from nudge.sender.pool import SmtpPool
from nudge.sender.render import Renderer, sample_variables
from nudge.settings import Settings, SmtpSettings
from nudge.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
PUBLISH_CHUNK = 2_000  # send commands published per wait for acknowledgements


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(index: int, run: str) -> SendCommand:
    return SendCommand(
        command_id=f"bench-{run}-{index}",
        idempotency_key=f"bench-{run}-{index}",
        user_id=f"u-{index}",
        journey="order_confirmation",
        step="confirmation",
        kind="transactional",
        template="order_confirmation",
        locale="ja" if index % 2 else "en",
        to=f"user{index}@example.jp",
        created_at=datetime.now(UTC),
        variables={**sample_variables()["order_confirmation"], "order_id": f"o-{index}"},
    )


def spawn(
    arguments: list[str],
    *,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    pipe: bool = False,
    profile: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `nudge ARGUMENTS` (our own CLI) with output to `log`, a pipe, or inherited;
    under cProfile (stats written to `profile` when it exits) if asked."""
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    command = [sys.executable, *profiler, "-m", "nudge.cli", *arguments]
    if log is not None:
        with log.open("wb") as handle:
            return subprocess.Popen(command, env=env, stdout=handle, stderr=handle)  # noqa: S603
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE if pipe else None)  # noqa: S603


def count_mail(maildir: Path) -> int:
    return sum(1 for _ in os.scandir(maildir))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): load-independent cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def local_broker_pid(bootstrap: str) -> int | None:
    """The pid of the broker `deploy/local/kafka.sh` started for this bootstrap port, if any:
    its CPU per mail is part of what a mail costs the machine."""
    port = bootstrap.split(",")[0].rpartition(":")[2]
    home = Path(os.environ.get("NUDGE_KAFKA_HOME", ROOT / ".cache" / "kafka"))
    try:
        pid = int((home / f"broker-{port}.pid").read_text().strip())
        cpu_seconds(pid)
    except (OSError, ValueError):
        return None
    return pid


async def wait_for_mail(
    maildir: Path, target: int, limit: float, pids: Sequence[int] = ()
) -> list[tuple[float, int, tuple[float, ...]]]:
    """Poll the sink's maildir every 50 ms until `target` files exist; (time, count, CPU of each
    of `pids`) samples, one fixed interval throughout (`methods.drain` relies on it)."""
    samples: list[tuple[float, int, tuple[float, ...]]] = []
    deadline = time.perf_counter() + limit
    while True:
        count = count_mail(maildir)
        samples.append((time.perf_counter(), count, tuple(cpu_seconds(pid) for pid in pids)))
        if count >= target:
            return samples
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {count} of {target} mails after {limit}s")
        await asyncio.sleep(0.05)


async def ceiling(
    port: int, raw: bytes, mails: int, connections: int, sink_pid: int
) -> dict[str, float]:
    """Mails/s with persistent connections and a pre-built message: the sink's ceiling; and the
    CPU per mail of this raw client and of the sink (what one mail costs each side at least)."""
    per_connection = mails // connections

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench")
        await client.connect()
        for _ in range(per_connection):
            await client.sendmail("shop@example.com", ["user@example.jp"], raw)
        await client.quit()

    sent = per_connection * connections
    sink_cpu, client_cpu = cpu_seconds(sink_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "mails_per_second": round(sent / elapsed, 1),
        "raw_client_cpu_ms_per_mail": round((time.process_time() - client_cpu) / sent * 1000, 3),
        "sink_cpu_ms_per_mail": round((cpu_seconds(sink_pid) - sink_cpu) / sent * 1000, 3),
    }


async def naive(port: int, settings: Settings, mails: int) -> float:
    """Mails/s rendering each mail and opening one connection per mail, one after another."""
    renderer = Renderer()
    started = time.perf_counter()
    for index in range(mails):
        composed = compose(
            command(index, "naive"), settings=settings, renderer=renderer, now=datetime.now(UTC)
        )
        await aiosmtplib.send(
            composed.raw,
            sender=composed.envelope_from,
            recipients=[composed.recipient],
            hostname="127.0.0.1",
            port=port,
            local_hostname="bench",
        )
    return mails / (time.perf_counter() - started)


async def nudge(
    port: int,
    sink_pid: int,
    settings: Settings,
    maildir: Path,
    mails: int,
    log: Path,
    profile: Path | None = None,
    source: Path | None = None,
) -> dict[str, float | None]:
    """Pre-publish `mails` commands, start one `nudge sender` (from `source`, a `service/`
    directory, if given), time until all arrived."""
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20, acks="all"
    )
    await producer.start()
    try:
        # In chunks: tens of thousands of sends at once overflow the producer's buffer and
        # time out waiting for room (KafkaTimeoutError) instead of waiting for the broker.
        for first in range(0, mails, PUBLISH_CHUNK):
            batch = [
                producer.send(
                    topics.send_commands,
                    encode_command(command(i, "nudge")),
                    key=f"u-{i}".encode(),
                )
                for i in range(first, min(mails, first + PUBLISH_CHUNK))
            ]
            for future in await asyncio.gather(*batch):
                await future
    finally:
        await producer.stop()
    baseline = count_mail(maildir)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "NUDGE_TOPIC_PREFIX": settings.topic_prefix,
        "SMTP_URL": f"smtp://127.0.0.1:{port}",
        "NUDGE_SENDER_PORT": "0",
        "NUDGE_LOG_LEVEL": "WARNING",
        "NUDGE_TOKEN_SECRET": "bench",
        "SMTP_MAX_CONNECTIONS": str(settings.smtp_max_connections),
    }
    if source is not None:  # ahead of the editable install: that tree's `nudge` is imported
        env["PYTHONPATH"] = str(source)
    broker = local_broker_pid(settings.kafka_bootstrap_servers)
    background = None
    if broker is not None:
        before = cpu_seconds(broker)
        await asyncio.sleep(1.0)
        background = round((cpu_seconds(broker) - before) * 1000, 1)
    started = time.perf_counter()
    process = spawn(["sender"], env=env, log=log, profile=profile)
    pids = [process.pid, sink_pid] + ([broker] if broker is not None else [])
    try:
        samples = await wait_for_mail(maildir, baseline + mails, limit=600, pids=pids)
    finally:
        process.terminate()
        process.wait(60)
    # CPU per mail over the steady part (after the first tenth): sender, sink, and the local
    # broker when this machine runs it; on shared vCPUs their sum is what bounds mails/s.
    figures = drain(samples, baseline=baseline, items=mails)
    per_mail = figures.cpu_per_item_steady
    cpu_per_mail = per_mail[0]
    return {
        "sender_cpu_ms_per_mail": round(cpu_per_mail * 1000, 3),
        "sink_cpu_ms_per_mail": round(per_mail[1] * 1000, 3),
        "broker_cpu_ms_per_mail": round(per_mail[2] * 1000, 3) if broker is not None else None,
        # The broker serves every client on this machine: its CPU per second just before the
        # sender started, to read `broker_cpu_ms_per_mail` against.
        "broker_background_cpu_ms_per_second": background,
        "all_cpu_ms_per_mail": round(sum(per_mail) * 1000, 3),
        "mails_per_cpu_second": round(1 / cpu_per_mail, 1) if cpu_per_mail else None,
        "mails": mails,
        "wall_seconds_including_startup": round(figures.done - started, 2),
        "startup_seconds": round(figures.first - started, 2),
        "mails_per_second": round(figures.rate, 1),
        "steady_mails_per_second": round(figures.steady_rate, 1),
    }


async def parts(args: argparse.Namespace) -> dict[str, object]:
    """CPU per call of the sender's pieces, in this process, old and new side by side: rendering
    flattened vs as Jinja compiles the files, and an SMTP transaction through the pool
    (pooled connections) vs aiosmtplib's `sendmail` on persistent connections, against one sink."""
    settings = Settings(token_secret=b"bench", smtp=SmtpSettings(port=free_port()))
    commands = [command(i, "parts") for i in range(400)]
    results: dict[str, list[float]] = {}

    def timed(name: str, seconds: float, calls: int) -> None:
        results.setdefault(name, []).append(round(seconds / calls * 1e6, 1))

    # The render calls' arguments, built once: the timed loops measure rendering only.
    calls = [
        (c.template, c.locale, {**c.variables, "shop_name": "S", "shop_url": "u"}) for c in commands
    ]
    for _ in range(args.parts_rounds):
        for flat in (False, True):
            renderer = Renderer(flat=flat)
            name = "render_flat_us" if flat else "render_jinja_us"
            for template, locale, context in calls[:20]:  # compile and warm up
                renderer.render(template, locale, context)
            started = time.process_time()
            for template, locale, context in calls:
                renderer.render(template, locale, context)
            timed(name, time.process_time() - started, len(calls))
        renderer, now = Renderer(), datetime.now(UTC)
        started = time.process_time()
        for c in commands:
            compose(c, settings=settings, renderer=renderer, now=now)
        timed("compose_us", time.process_time() - started, len(commands))
    maildir = Path(tempfile.mkdtemp(prefix="nudge-bench-parts-"))
    port = settings.smtp.port
    sink = spawn(
        ["smtp-sink", "--port", str(port), "--maildir", str(maildir), "--quiet"], pipe=True
    )
    try:
        assert sink.stdout is not None  # noqa: S101 - PIPE was asked for
        await asyncio.to_thread(sink.stdout.readline)
        raw = compose(
            commands[0], settings=settings, renderer=Renderer(), now=datetime.now(UTC)
        ).raw
        mails = 2000

        async def nothing() -> None:
            return None

        for _ in range(args.parts_rounds):
            pool = SmtpPool(settings.smtp, max_connections=8)

            async def pooled(n: int, pool: SmtpPool = pool) -> None:
                for _ in range(n):
                    await pool.send("shop@example.com", "user@example.jp", raw, before_data=nothing)

            started = time.process_time()
            await asyncio.gather(*(pooled(mails // 8) for _ in range(8)))
            timed("smtp_pool_us", time.process_time() - started, mails)
            await pool.close()
            started = time.process_time()
            await ceiling(port, raw, mails, 8, sink.pid)
            timed("smtp_aiosmtplib_sendmail_us", time.process_time() - started, mails)
    finally:
        sink.terminate()
        sink.wait(10)
    summary = {name: statistics.median(values) for name, values in results.items()}
    for name, values in results.items():
        print(f"{name}: median {summary[name]} (runs {values})")
    return {"benchmark": "sender-parts", "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu_per_call_median": summary, "runs": results}  # fmt: skip


def median_run(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    """The run with the median ratio to the ceilings measured around it (the lower middle one of
    an even number), plus the median CPU per mail over all runs (the figure least disturbed by
    the neighbours)."""
    ordered = sorted(runs, key=lambda run: float(run["vs_ceiling"] or 0))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(runs) > 1:
        for figure in ("sender_cpu_ms_per_mail", "all_cpu_ms_per_mail"):
            chosen[f"median_{figure}"] = statistics.median(float(run[figure] or 0) for run in runs)
    return chosen


async def run(args: argparse.Namespace) -> dict[str, object]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    load_before = round(os.getloadavg()[0], 2)
    port = free_port()
    maildir = Path(tempfile.mkdtemp(prefix="nudge-bench-mail-"))
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.",
        smtp=SmtpSettings(port=port),
        smtp_max_connections=args.connections,
        token_secret=b"bench",
    )
    sink = spawn(
        ["smtp-sink", "--port", str(port), "--maildir", str(maildir), "--quiet"], pipe=True
    )
    try:
        assert sink.stdout is not None  # noqa: S101 - PIPE was asked for
        await asyncio.to_thread(sink.stdout.readline)  # "listening on ..."
        raw = compose(
            command(0, "ceiling"), settings=settings, renderer=Renderer(), now=datetime.now(UTC)
        ).raw
        print(f"sink on 127.0.0.1:{port}, maildir {maildir}; message size {len(raw)} bytes")
        first = await ceiling(port, raw, args.ceiling_mails, args.connections, sink.pid)
        print(
            f"ceiling (raw client, {args.connections} connections): "
            f"{first['mails_per_second']:,.0f} mails/s; "
            f"CPU per mail: client {first['raw_client_cpu_ms_per_mail']} ms, "
            f"sink {first['sink_cpu_ms_per_mail']} ms"
        )
        naive_rate = await naive(port, settings, args.naive_mails)
        print(f"naive loop (one connection per mail): {naive_rate:,.0f} mails/s")
        ceilings = [float(first["mails_per_second"])]
        runs: list[dict[str, float | None]] = []
        baselines: list[dict[str, float | None]] = []
        for round_ in range(max(1, args.rounds)):
            # Same sink, fresh topics for every phase. With --baseline, the order alternates
            # (AB, BA, AB, …): whichever runs second meets different neighbours on a shared host.
            order = ("nudge", "baseline") if round_ % 2 == 0 else ("baseline", "nudge")
            done: list[dict[str, float | None]] = []
            for which in order:
                if which == "baseline" and args.baseline is None:
                    continue
                fresh = replace(settings, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
                outcome = await nudge(
                    port, sink.pid, fresh, maildir, args.mails,
                    Path(maildir.parent / f"bench-{which}.log"),
                    args.profile if which == "nudge" and not runs else None,
                    source=args.baseline if which == "baseline" else None,
                )  # fmt: skip
                (runs if which == "nudge" else baselines).append(outcome)
                done.append(outcome)
                label = "nudge sender (one process)" if which == "nudge" else (
                    f"baseline sender ({args.baseline})"
                )  # fmt: skip
                print(
                    f"{label}: {outcome['mails_per_second']:,.0f} mails/s "
                    f"(steady {outcome['steady_mails_per_second']:,.0f}; "
                    f"startup {outcome['startup_seconds']} s); "
                    f"CPU ms per mail: sender {outcome['sender_cpu_ms_per_mail']}, "
                    f"sink {outcome['sink_cpu_ms_per_mail']}, "
                    f"broker {outcome['broker_cpu_ms_per_mail']}"
                )
            # The machine may be shared: every round is compared with the mean of the ceilings
            # measured just before and just after it.
            after = await ceiling(port, raw, args.ceiling_mails, args.connections, sink.pid)
            ceilings.append(float(after["mails_per_second"]))
            around = (ceilings[-2] + ceilings[-1]) / 2
            for outcome in done:
                outcome["ceiling_around"] = round(around, 1)
                outcome["vs_ceiling"] = round(float(outcome["mails_per_second"] or 0) / around, 2)
            print(
                f"ceiling again: {ceilings[-1]:,.0f} mails/s; round {round_ + 1}: nudge / ceiling "
                + ", ".join(f"{outcome['vs_ceiling']}" for outcome in done)
            )
        result = median_run(runs)
        baseline = median_run(baselines) if baselines else None
    finally:
        sink.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sink.wait(10)
        if sink.poll() is None:
            sink.kill()
    return {
        "benchmark": "sender",
        "command": "make bench-sender  # python bench/bench_sender.py " + " ".join(sys.argv[1:]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "smtp_connections": args.connections,
        "message_bytes": len(raw),
        "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "ceilings_mails_per_second": [round(c, 1) for c in ceilings],
        # Around the median round: its mails/s over this is `nudge_vs_ceiling`.
        "ceiling_mails_per_second": result["ceiling_around"],
        "ceiling_cpu_ms_per_mail": {
            "raw_client": first["raw_client_cpu_ms_per_mail"],
            "sink": first["sink_cpu_ms_per_mail"],
        },
        "naive_mails_per_second": round(naive_rate, 1),
        "nudge": result,
        "baseline": None if baseline is None else {"source": str(args.baseline), **baseline},
        "rounds": {"nudge": runs, "baseline": baselines},
        "nudge_vs_naive": round(float(result["mails_per_second"] or 0) / naive_rate, 1),
        "nudge_vs_ceiling": result["vs_ceiling"],
        "baseline_vs_ceiling": None if baseline is None else baseline["vs_ceiling"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--ceiling-mails", type=int, default=3000)
    parser.add_argument("--naive-mails", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "sender.json")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also run the sender from this `service/` tree (e.g. `git archive HEAD service | "
        "tar -x -C /tmp/base`, then /tmp/base/service) in the same run, for a before/after",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run the sender (and --baseline's) this many times, the ceiling measured again "
        "after each round; each run is compared with the ceilings just before and after it, "
        "and the run with the median ratio is reported (noisy shared machines)",
    )
    parser.add_argument(
        "--parts",
        action="store_true",
        help="only the in-process CPU per call of rendering (flattened vs Jinja's) and of an "
        "SMTP transaction (pool vs aiosmtplib sendmail); no Kafka; results/sender-parts.json",
    )
    parser.add_argument("--parts-rounds", type=int, default=5)
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the sender under cProfile and write its stats here (slower; for finding costs)",
    )
    args = parser.parse_args()
    if args.parts:
        if args.out == parser.get_default("out"):
            args.out = ROOT / "results" / "sender-parts.json"
        results = asyncio.run(parts(args))
    else:
        results = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
