"""`make bench-engine`: `nudge simulate` over 1,000,000 synthetic events of 100,000 users.

Reports events per second (decode + engine + writing commands and decisions, one process, one
core), peak memory of the simulating process (VmHWM) and the stored state size per user (all
users, and idle users: nothing due in the next 24 h and an empty cart), with the machine's load
average around each run, since the figures depend on it on a shared machine. Each repetition
runs in a fresh child process so that peak memory is the simulator's own; the table shows the
median of the repetitions and results/engine.json keeps every run.

    .venv/bin/python bench/bench_engine.py [--users 100000] [--events 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from methods import percentile  # bench/methods.py (this directory)

ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "engine.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.work)
    log = args.work / f"events-{args.users}u-{args.events}e-{args.days}d-s{args.seed}.jsonl"
    if not log.exists():
        generate(log, args)
    runs = []
    for index in range(args.repeat):
        load_before = os.getloadavg()[0]
        done = subprocess.run(  # noqa: S603 (our own interpreter and script)
            [sys.executable, __file__, "--child", str(log), "--work", str(args.work)],
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(done.stdout)
        # The machine is shared: the 1-minute load average before and after says how much.
        run["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        runs.append(run)
        print(
            f"  run {index + 1}: {run['events_per_second']:,.0f} events/s, "
            f"peak {run['peak_rss_mib']:.0f} MiB, load {load_before:.1f}-{os.getloadavg()[0]:.1f}",
            file=sys.stderr,
        )
    report(runs, log, args)
    return 0


def generate(log: Path, args: argparse.Namespace) -> None:
    """Generate with a margin, then keep the first N events (the log stays time-sorted)."""
    from nudge.journeys.synth import Plan
    from nudge.journeys.synth import generate as synth

    started = time.perf_counter()
    per_user = args.events / args.users * 1.1
    lines = synth(Plan(users=args.users, days=args.days, seed=args.seed, events_per_user=per_user))
    if len(lines) < args.events:
        sys.exit(f"generated only {len(lines)} events; raise --days or lower --events")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        for line in lines[: args.events]:
            out.write(line + b"\n")
    print(
        f"generated {args.events:,} events in {time.perf_counter() - started:.0f} s: {log}",
        file=sys.stderr,
    )


def child(log: Path, work: Path) -> int:
    """One measured simulation; prints its figures as JSON."""
    from nudge.journeys import Engine, encode_state, load_journeys
    from nudge.journeys.replay import Replay
    from nudge.journeys.simulate import simulate
    from nudge.journeys.state import NATIVE
    from nudge.settings import SHIPPED_JOURNEYS

    engine = Engine(load_journeys(SHIPPED_JOURNEYS))
    replay = Replay(engine)
    with (work / "commands.jsonl").open("wb") as out, (work / "decisions.jsonl").open("wb") as dec:
        started = time.perf_counter()
        cpu = time.process_time()
        report = simulate(engine, log, until=None, out=out, decisions=dec, replay=replay)
        elapsed = time.perf_counter() - started
        cpu_used = time.process_time() - cpu
    summary = report.as_dict()
    events = summary["events"]["valid"] + summary["events"]["invalid"]
    clock = replay.clock or 0
    sizes, idle = [], []
    for state in replay.states.values():
        size = len(encode_state(state))
        sizes.append(size)
        soon = any(r.due < clock + DAY_MS for r in state.runs)
        if not state.cart and not soon:
            idle.append(size)
    peak_kib = _peak_rss_kib()
    print(
        json.dumps(
            {
                "events": events,
                # mypyc-compiled engine (`make install`) or the interpreted source
                "compiled": NATIVE,
                "users": len(sizes),
                "commands": summary["commands"]["total"],
                "seconds": round(elapsed, 3),
                "cpu_seconds": round(cpu_used, 3),
                "events_per_second": round(events / elapsed),
                "events_per_cpu_second": round(events / cpu_used),
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "state_bytes_mean": round(statistics.fmean(sizes), 1),
                "state_bytes_p99": percentile(sizes, 0.99),
                "idle_users": len(idle),
                "idle_state_bytes_mean": round(statistics.fmean(idle), 1) if idle else None,
                "idle_state_bytes_median": statistics.median(idle) if idle else None,
                "idle_state_bytes_max": max(idle) if idle else None,
            }
        )
    )
    return 0


def _peak_rss_kib() -> int:
    """This process's own peak RSS. ru_maxrss survives exec on Linux, so a child started by a
    parent that held the generated log would report the parent's peak; VmHWM does not."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def report(runs: list[dict[str, Any]], log: Path, args: argparse.Namespace) -> None:
    keys = [
        "events_per_second",
        "events_per_cpu_second",
        "seconds",
        "peak_rss_mib",
        "state_bytes_mean",
        "state_bytes_p99",
        "idle_state_bytes_mean",
        "idle_state_bytes_median",
        "idle_state_bytes_max",
    ]
    median = {k: statistics.median(r[k] for r in runs) for k in keys}
    first = runs[0]
    print(
        f"\nnudge simulate: {first['events']:,} events, {first['users']:,} users, "
        f"{first['commands']:,} commands; median of {len(runs)} runs; "
        f"engine {'compiled (mypyc)' if first['compiled'] else 'interpreted'}"
    )
    print(f"  {'metric':<28} {'median':>14}   target")
    targets = {"events_per_second": ">= 100,000", "idle_state_bytes_mean": "< 1,024"}
    for key in keys:
        print(f"  {key:<28} {median[key]:>14,.1f}   {targets.get(key, '')}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(
        json.dumps(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": "make bench-engine  (.venv/bin/python bench/bench_engine.py "
                f"--users {args.users} --events {args.events} --repeat {args.repeat})",
                "log": str(log.relative_to(ROOT)) if log.is_relative_to(ROOT) else str(log),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "compiled": first["compiled"],
                "median": median,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.results}")


if __name__ == "__main__":
    sys.exit(main())
