"""`make bench`: every benchmark, then one table of figures beside their same-run baselines.

Runs `make bench-e2e`, `make bench-sender`, `make bench-processor` and `make bench-engine` one
after the other (a failing or missing one does not stop the others), reads the result files they
write (results/engine.json, processor.json, sender.json, e2e.json), and writes results/bench.json
plus a table: figure, value, baseline (measured in the same run by that benchmark: raw aiokafka
loop, naive sender, sink ceiling, raw Kafka round trip), ratio, target. A missing file is "not
run"; a file older than this run is shown with its date, marked stale.

Usage: python bench/run_all.py [--skip engine,processor] [--summary-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
COMPONENTS = ("engine", "processor", "sender", "e2e")  # the table's order
RUN_ORDER = ("e2e", "sender", "processor", "engine")  # shortest first: a late run still reports


def dig(data: Any, path: str) -> Any:
    """`a.b.0.c` in nested dicts and lists, or None."""
    for part in path.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


@dataclass(frozen=True, slots=True)
class Row:
    component: str
    figure: str
    path: str
    unit: str
    baseline: str | None = None  # label
    baseline_path: str | None = None
    target: str = ""
    meets: Callable[[float, float | None], bool] | None = None
    # A count that must be 0 for the target to be met: a latency percentile says nothing about
    # the mails that never arrived (bench_e2e's own verdict requires none missing too).
    none_missing: str | None = None


ROWS = (
    Row(
        "engine",
        "nudge simulate throughput",
        "median.events_per_second",
        "events/s",
        target=">= 100,000",
        meets=lambda v, _: v >= 100_000,
    ),
    Row(
        "engine",
        "state per idle user (mean)",
        "median.idle_state_bytes_mean",
        "bytes",
        target="< 1,024",
        meets=lambda v, _: v < 1024,
    ),
    Row("engine", "peak memory", "median.peak_rss_mib", "MiB"),
    Row(
        "processor",
        "processor throughput, 1 worker",
        "throughput.nudge_events_per_second",
        "events/s",
        "raw aiokafka loop",
        "throughput.ceiling_events_per_second",
        ">= 50 % and >= 10,000",
        lambda v, b: b is not None and v >= 0.5 * b and v >= 10_000,
    ),
    Row(
        "processor",
        "timers: p99 lag due → command",
        "timers.lag_p99_seconds",
        "s",
        target="< 5",
        meets=lambda v, _: v < 5,
    ),
    Row(
        "processor", "timers: RSS per pending timer", "timers.rss_bytes_per_pending_timer", "bytes"
    ),
    Row(
        "processor",
        "recovery after SIGKILL (same state dir)",
        "timers.recovery_same_state_dir_seconds",
        "s",
    ),
    Row(
        "sender",
        "sender mails/s, 1 process",
        "nudge.mails_per_second",
        "mails/s",
        "sink ceiling (raw client)",
        "ceiling_mails_per_second",
        ">= 2,000 or >= 80 % of ceiling",
        lambda v, b: v >= 2000 or (b is not None and v >= 0.8 * b),
    ),
    Row(
        "sender",
        "sender mails/s vs naive loop",
        "nudge.mails_per_second",
        "mails/s",
        "naive (1 connection/mail)",
        "naive_mails_per_second",
    ),
    Row(
        "e2e",
        "e2e p99 at the 1st rate (250/s)",
        "phases.0.p99_ms",
        "ms",
        target="< 250",
        meets=lambda v, _: v < 250,
        none_missing="phases.0.mails_missing",
    ),
    Row(
        "e2e",
        "e2e p99 at the 2nd rate (500/s)",
        "phases.1.p99_ms",
        "ms",
        target="< 250",
        meets=lambda v, _: v < 250,
        none_missing="phases.1.mails_missing",
    ),
    Row(
        "e2e",
        "e2e order → mail p50 (1,000/s)",
        "nudge.p50_ms",
        "ms",
        "raw Kafka produce→consume p50",
        "baseline_raw_kafka.p50_ms",
    ),
    Row(
        "e2e",
        "e2e order → mail p95 (1,000/s)",
        "nudge.p95_ms",
        "ms",
        "raw Kafka produce→consume p95",
        "baseline_raw_kafka.p95_ms",
    ),
    Row(
        "e2e",
        "e2e order → mail p99 (1,000/s)",
        "nudge.p99_ms",
        "ms",
        "raw Kafka produce→consume p99",
        "baseline_raw_kafka.p99_ms",
        "< 250",
        lambda v, _: v < 250,
        "nudge.mails_missing",
    ),
)


def has_target(name: str) -> bool:
    probe = subprocess.run(  # noqa: S603
        ["make", "-n", f"bench-{name}"],  # noqa: S607 (make from PATH, as the Makefile itself)
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def run_component(name: str) -> dict[str, Any]:
    if not has_target(name):
        return {"status": "not run", "why": f"no `make bench-{name}` target yet"}
    print(f"\n=== make bench-{name}", flush=True)
    started = time.monotonic()
    done = subprocess.run(["make", f"bench-{name}"], cwd=ROOT, check=False)  # noqa: S603,S607
    seconds = round(time.monotonic() - started, 1)
    status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    return {"status": status, "seconds": seconds}


def load(name: str, since: float) -> tuple[dict[str, Any] | None, str]:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None, "not run"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return None, f"unreadable: {err}"
    mtime = path.stat().st_mtime
    # The run's own time when the file says it (a copied file has a new mtime), else the mtime.
    at = data.get("at") if isinstance(data, dict) else None
    when = at[:16] if isinstance(at, str) else (
        datetime.fromtimestamp(mtime, UTC).isoformat(timespec="minutes")
    )  # fmt: skip
    if not since:
        return data, f"from {when}"
    return data, ("this run" if mtime >= since else f"stale, from {when}")


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.1f}" if isinstance(value, float) and value < 100 else f"{value:,.0f}"
    return str(value)


def ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
            break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "loadavg_at_end": os.getloadavg(),
        "python": platform.python_version(),
    }


def summarize(since: float, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    data: dict[str, dict[str, Any] | None] = {}
    freshness: dict[str, str] = {}
    for name in COMPONENTS:
        data[name], freshness[name] = load(name, since)
    rows = []
    for row in ROWS:
        source = data[row.component]
        value = dig(source, row.path) if source else None
        base = dig(source, row.baseline_path) if source and row.baseline_path else None
        ratio = round(value / base, 2) if isinstance(value, int | float) and base else None
        meets = row.meets(value, base) if row.meets and isinstance(value, int | float) else None
        if meets and row.none_missing is not None and dig(source, row.none_missing) != 0:
            meets = False
        rows.append(
            {
                "component": row.component,
                "figure": row.figure,
                "value": value,
                "unit": row.unit,
                "baseline": row.baseline,
                "baseline_value": base,
                "ratio": ratio,
                "target": row.target,
                "meets_target": meets,
                "source": freshness[row.component],
            }
        )
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "components": {
            name: {**runs.get(name, {"status": "skipped"}), "results": freshness[name]}
            for name in COMPONENTS
        },
        "rows": rows,
        "raw": data,
    }


def table(summary: dict[str, Any]) -> str:
    head = f"{'figure':40} {'value':>12} {'unit':9} {'baseline (same run)':32} {'base':>10} "
    head += f"{'ratio':>6}  {'target':22} ok   source"
    lines = [head, "-" * len(head)]
    for r in summary["rows"]:
        ok = {True: "yes", False: "NO", None: ""}[r["meets_target"]]
        missing = r["source"] if r["source"] in ("not run",) or "unreadable" in r["source"] else "—"
        value = fmt(r["value"]) if r["value"] is not None else missing
        lines.append(
            f"{r['figure']:40} {value:>12} {r['unit']:9} {r['baseline'] or '':32} "
            f"{fmt(r['baseline_value']) if r['baseline'] else '':>10} "
            f"{ratio(r['ratio']):>6}  {r['target']:22} "
            f"{ok:4} {r['source'] if r['value'] is not None else ''}"
        )
    lines.append("")
    for name, info in summary["components"].items():
        lines.append(f"bench-{name}: {info.get('status')} — results: {info.get('results')}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", default="", help="components not to run, e.g. engine,processor")
    parser.add_argument("--summary-only", action="store_true", help="only read the result files")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    args = parser.parse_args()
    since = time.time()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    runs: dict[str, dict[str, Any]] = {}
    if not args.summary_only:
        for name in RUN_ORDER:
            runs[name] = {"status": "skipped"} if name in skip else run_component(name)
    else:
        since = 0.0
    summary = summarize(since, runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print("\n" + table(summary))
    print(f"\nwrote {args.out}")
    failed = [n for n, r in runs.items() if r.get("status", "").startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
