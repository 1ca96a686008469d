"""`nudge simulate`: the production engine over a JSONL event log, on a virtual clock.

The clock is event time: before each event, every wake-up due by its `occurred_at` fires (across
users, earliest first), then the event is applied; at the end wake-ups fire until `--until`
(default: the last event's time). A log that is not in time order is read in time order (stable,
so each user's own order is kept). Invalid lines are reported with their line number and skipped.
The same input always gives byte-identical output.
"""

from __future__ import annotations

import argparse
import re
import sys
from array import array
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from nudge.codec import decode_event, encode_command
from nudge.errors import ConfigError, InvalidEvent
from nudge.journeys.durations import parse_duration_ms
from nudge.journeys.engine import Engine
from nudge.journeys.loader import load_journeys
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.outcome import Decision
from nudge.journeys.replay import Replay
from nudge.journeys.report import Report
from nudge.settings import Settings

_OCCURRED = re.compile(rb'"occurred_at"\s*:\s*"([^"]{10,40})"')
MAX_REPORTED_ON_STDERR = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=Path, required=True, help="JSONL event log")
    parser.add_argument("--journeys", type=Path, help="journeys file (default: NUDGE_JOURNEYS)")
    parser.add_argument(
        "--until",
        help="keep the clock running until this time: RFC 3339 (2027-01-31T00:00:00+09:00) or "
        "a duration after the last event (+30d); default: the last event's time",
    )
    parser.add_argument("--out", type=Path, help="send commands, JSONL (default: stdout)")
    parser.add_argument("--decisions", type=Path, help="every decision with its reason, JSONL")
    parser.add_argument("--report", type=Path, help="summary, JSON")


def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        config = load_journeys(args.journeys or settings.journeys_path)
    except ConfigError as err:
        print(f"nudge simulate: {err}", file=sys.stderr)
        return 2
    engine = Engine(config, delay_scale=settings.delay_scale)
    try:
        with _open(args.out, sys.stdout.buffer) as out, _open(args.decisions, None) as decisions:
            report = simulate(engine, args.events, until=args.until, out=out, decisions=decisions)
    except (OSError, ValueError) as err:
        print(f"nudge simulate: {err}", file=sys.stderr)
        return 2
    summary = report.as_dict()
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_bytes(orjson.dumps(summary, option=_JSON) + b"\n")
    for item in report.invalid[:MAX_REPORTED_ON_STDERR]:
        print(f"{args.events}:{item['line']}: {item['reason']}: {item['message']}", file=sys.stderr)
    if report.invalid_count > MAX_REPORTED_ON_STDERR:
        more = report.invalid_count - MAX_REPORTED_ON_STDERR
        print(f"... and {more} more invalid lines (see --report)", file=sys.stderr)
    print(
        f"nudge simulate: {summary['events']['valid']} events ({report.invalid_count} invalid), "
        f"{summary['users']} users, {summary['commands']['total']} commands",
        file=sys.stderr,
    )
    return 0


_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


def simulate(
    engine: Engine,
    events_path: Path,
    *,
    until: str | None,
    out: IO[bytes] | None,
    decisions: IO[bytes] | None,
    replay: Replay | None = None,
) -> Report:
    """Replay the log; write commands and decisions as they happen; return the report.

    Pass `replay` to inspect the users' states afterwards (the benchmark measures their size).
    """
    report = Report()
    replay = replay or Replay(engine)
    last: datetime | None = None
    for line_no, raw in _lines_in_time_order(events_path):
        try:
            event = decode_event(raw)
        except InvalidEvent as err:
            report.invalid_line(line_no, err.reason, str(err))
            continue
        report.events[event.type] += 1
        report.users.add(event.user_id)
        if report.first_event is None:
            report.first_event = event.occurred_at.isoformat()
        if last is None or event.occurred_at >= last:
            last = event.occurred_at
        for tick in replay.apply(event):
            _emit(tick.outcome.commands, tick.outcome.decisions, out, decisions, report)
    report.last_event = last.isoformat() if last is not None else None
    end = _until(until, last)
    if end is not None:
        report.until = from_ms(end).isoformat()
        for tick in replay.advance(end):
            _emit(tick.outcome.commands, tick.outcome.decisions, out, decisions, report)
    return report


def _emit(
    commands: Any,
    decided: tuple[Decision, ...],
    out: IO[bytes] | None,
    decisions: IO[bytes] | None,
    report: Report,
) -> None:
    if out is not None:
        for command in commands:
            out.write(encode_command(command) + b"\n")
    for decision in decided:
        report.decision(decision)
        if decisions is not None:
            decisions.write(_decision_json(decision) + b"\n")


def _decision_json(d: Decision) -> bytes:
    data = {name: getattr(d, name) for name in d.__slots__}
    return orjson.dumps({k: v for k, v in data.items() if v is not None and v is not False})


def _until(text: str | None, last: datetime | None) -> int | None:
    if text is None:
        return None if last is None else to_ms(last)
    if text.startswith("+"):
        if last is None:
            return None
        return to_ms(last) + parse_duration_ms(text[1:])
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"--until {text!r} has no UTC offset; e.g. 2027-01-31T00:00:00+09:00")
    return to_ms(moment)


def _lines_in_time_order(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) in event-time order; a sorted log streams without holding it."""
    keys = array("q")
    offsets = array("q")
    ordered = True
    previous = -(2**62)
    with path.open("rb") as file:
        offset = 0
        for raw in file:
            key = _time_key(raw, previous)
            if key < previous:
                ordered = False
            previous = max(previous, key)
            keys.append(key)
            offsets.append(offset)
            offset += len(raw)
        if ordered:
            file.seek(0)
            for line_no, raw in enumerate(file, start=1):
                if raw.strip():
                    yield line_no, raw.rstrip(b"\r\n")
            return
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: keeps each user's order
        for index in order:
            file.seek(offsets[index])
            raw = file.readline()
            if raw.strip():
                yield index + 1, raw.rstrip(b"\r\n")


def _time_key(raw: bytes, previous: int) -> int:
    """The line's occurred_at in ms; an unreadable line keeps its place (it is reported later)."""
    match = _OCCURRED.search(raw)
    if match is None:
        return previous
    try:
        moment = datetime.fromisoformat(match.group(1).decode())
    except (ValueError, UnicodeDecodeError):
        return previous
    return to_ms(moment) if moment.tzinfo is not None else previous


class _open:
    """Open PATH for writing (creating its folder), or use `default` when PATH is None."""

    def __init__(self, path: Path | None, default: IO[bytes] | None) -> None:
        self.path = path
        self.file: IO[bytes] | None = default

    def __enter__(self) -> IO[bytes] | None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.path.open("wb")
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.path is not None and self.file is not None:
            self.file.close()
