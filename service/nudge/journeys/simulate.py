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
from typing import IO

import orjson

from nudge.codec import decode_event, encode_command
from nudge.commandline import USAGE, error, reason
from nudge.errors import ConfigError, InvalidEvent
from nudge.journeys.durations import parse_duration_ms
from nudge.journeys.engine import Engine, Result
from nudge.journeys.loader import load_journeys
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.outcome import Decision
from nudge.journeys.replay import Replay, Sink
from nudge.journeys.report import Report
from nudge.settings import Settings

_OCCURRED = re.compile(rb'"occurred_at"\s*:\s*"([^"]{10,40})"')
_KEY = b'"occurred_at"'  # where `_OCCURRED` can start
MAX_REPORTED_ON_STDERR = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=Path, required=True, help="JSONL event log")
    parser.add_argument(
        "--journeys", type=Path, help="journeys file (default: NUDGE_JOURNEYS or the shipped one)"
    )
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
        _until(args.until, None)  # refused before reading a long log, not after
    except ValueError as err:
        error("simulate", str(err))
        return USAGE
    named_by = "--journeys" if args.journeys is not None else "NUDGE_JOURNEYS"
    try:
        config = load_journeys(args.journeys or settings.journeys_path, named_by=named_by)
    except ConfigError as err:
        error("simulate", str(err))
        return USAGE
    engine = Engine(config, delay_scale=settings.delay_scale)
    try:
        with _open(args.out, sys.stdout.buffer) as out, _open(args.decisions, None) as decisions:
            report = simulate(engine, args.events, until=args.until, out=out, decisions=decisions)
        summary = report.as_dict()
        if args.report is not None:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_bytes(orjson.dumps(summary, option=_JSON) + b"\n")
    except BrokenPipeError:
        raise  # stdout's reader stopped reading (`| head`): `nudge` ends quietly
    except OSError as err:
        error("simulate", f"cannot {_use_of(args, err.filename)}: {reason(err, err.filename)}")
        return USAGE
    except ValueError as err:
        error("simulate", str(err))
        return USAGE
    for item in report.invalid[:MAX_REPORTED_ON_STDERR]:
        print(f"{args.events}:{item['line']}: {item['reason']}: {item['message']}", file=sys.stderr)
    if report.invalid_count > MAX_REPORTED_ON_STDERR:
        more = report.invalid_count - MAX_REPORTED_ON_STDERR
        print(f"... and {more} more invalid lines (see --report)", file=sys.stderr)
    if _ends_early(report):
        print(
            f"nudge simulate: warning: --until {args.until} is before the last event "
            f"({report.last_event}): it does not cut the log, every event is still applied",
            file=sys.stderr,
        )
    valid = summary["events"]["valid"]
    print(
        f"nudge simulate: {valid} event{'' if valid == 1 else 's'} "
        f"({report.invalid_count} invalid), {summary['users']} users, "
        f"{summary['commands']['total']} commands",
        file=sys.stderr,
    )
    return 0


def _use_of(args: argparse.Namespace, filename: object) -> str:
    """`read --events log.jsonl` for an error about log.jsonl (or about a folder on its way)."""
    for option in ("events", "out", "decisions", "report"):
        path = getattr(args, option)
        if path is not None and filename is not None and path.is_relative_to(str(filename)):
            verb = "read" if option == "events" else "write"
            return f"{verb} --{option} {path}"
    return f"use {filename}" if filename is not None else "write to stdout"


def _ends_early(report: Report) -> bool:
    """`--until` before the last event: the log is applied whole, so it meant nothing."""
    if report.until is None or report.last_event is None:
        return False
    return datetime.fromisoformat(report.until) < datetime.fromisoformat(report.last_event)


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
    sink = _sink(out, decisions, report)
    feed = replay.feed
    counts = report.events
    users = report.users
    last: datetime | None = None
    for line_no, raw in _lines_in_time_order(events_path):
        try:
            event = decode_event(raw)
        except InvalidEvent as err:
            report.invalid_line(line_no, err.reason, str(err))
            continue
        counts[event.type] += 1
        users.add(event.user_id)
        occurred = event.occurred_at
        if last is None:
            report.first_event = occurred.isoformat()
            last = occurred
        elif occurred >= last:
            last = occurred
        feed(event, sink)
    report.last_event = last.isoformat() if last is not None else None
    end = _until(until, last)
    if end is not None:
        report.until = from_ms(end).isoformat()
        replay.run_until(end, sink)
    return report


def _sink(out: IO[bytes] | None, decisions: IO[bytes] | None, report: Report) -> Sink:
    """Write each engine call's commands and decisions, and count its decisions."""
    write_command = out.write if out is not None else None
    write_decision = decisions.write if decisions is not None else None
    count = report.decision

    def sink(_user_id: str, _at: int, result: Result) -> None:
        if write_command is not None:
            for command in result[1]:
                write_command(encode_command(command) + b"\n")
        for decision in result[2]:
            count(decision)
            if write_decision is not None:
                write_decision(_decision_json(decision) + b"\n")

    return sink


def _decision_json(d: Decision) -> bytes:
    """The decision's fields in declaration order, without the null and false ones.

    Spelled out field by field (`fields(Decision)` order; test_simulate pins the output): a
    loop over the field names was a tenth of a compiled run.
    """
    data: dict[str, object] = {
        "user_id": d.user_id,
        "at": d.at,
        "outcome": d.outcome,
        "reason": d.reason,
    }
    if d.journey is not None:
        data["journey"] = d.journey
    if d.step is not None:
        data["step"] = d.step
    if d.kind is not None:
        data["kind"] = d.kind
    if d.variant is not None:
        data["variant"] = d.variant
    if d.command_id is not None:
        data["command_id"] = d.command_id
    if d.idempotency_key is not None:
        data["idempotency_key"] = d.idempotency_key
    if d.trigger_event_id is not None:
        data["trigger_event_id"] = d.trigger_event_id
    if d.event_id is not None:
        data["event_id"] = d.event_id
    if d.until is not None:
        data["until"] = d.until
    if d.revenue is not None:
        data["revenue"] = d.revenue
    if d.currency is not None:
        data["currency"] = d.currency
    if d.holdout:
        data["holdout"] = True
    return orjson.dumps(data)


def _until(text: str | None, last: datetime | None) -> int | None:
    if text is None:
        return None if last is None else to_ms(last)
    if text.startswith("+"):
        try:
            after = parse_duration_ms(text[1:])
        except ValueError as err:
            raise ValueError(f"--until {text!r}: {err}; e.g. +30d") from None
        return None if last is None else to_ms(last) + after
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--until {text!r} is neither a time (2027-01-31T00:00:00+09:00) nor a duration "
            "after the last event (+30d)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"--until {text!r} has no UTC offset; e.g. 2027-01-31T00:00:00+09:00")
    return to_ms(moment)


def _lines_in_time_order(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) in event-time order; a sorted log streams without holding it."""
    with path.open("rb") as file:
        if _in_time_order(file):
            file.seek(0)
            for line_no, raw in enumerate(file, start=1):
                if not raw.isspace():
                    yield line_no, raw.rstrip(b"\r\n")
            return
        file.seek(0)
        keys = array("q")
        offsets = array("q")
        previous = -(2**62)
        offset = 0
        for raw in file:
            key = _time_key(raw, previous)
            previous = max(previous, key)
            keys.append(key)
            offsets.append(offset)
            offset += len(raw)
        order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: keeps each user's order
        for index in order:
            file.seek(offsets[index])
            raw = file.readline()
            if raw.strip():
                yield index + 1, raw.rstrip(b"\r\n")


def _in_time_order(file: IO[bytes]) -> bool:
    """True when no line's occurred_at is before an earlier one's: the cheap first pass.

    Comparing datetimes needs no millisecond keys or offsets; a log out of order by less than
    a millisecond may be reported unordered, and the keyed sort then keeps its order anyway.
    """
    latest: datetime | None = None
    previous_text = b""
    for raw in file:
        match = _occurred(raw)
        if match is None:
            continue
        text = match.group(1)
        if text == previous_text:
            continue
        previous_text = text
        try:
            moment = datetime.fromisoformat(text.decode())
        except (ValueError, UnicodeDecodeError):
            continue
        if moment.tzinfo is None:
            continue
        if latest is None or moment > latest:
            latest = moment
        elif moment < latest:
            return False
    return True


def _occurred(raw: bytes) -> re.Match[bytes] | None:
    """`_OCCURRED.search(raw)`, trying only where the literal key starts: the regex engine would
    try every position of the line, the tenth of a run's time spent on this first pass."""
    match = _OCCURRED.match
    index = raw.find(_KEY)
    while index != -1:
        found = match(raw, index)
        if found is not None:
            return found
        index = raw.find(_KEY, index + 1)
    return None


def _time_key(raw: bytes, previous: int) -> int:
    """The line's occurred_at in ms; an unreadable line keeps its place (it is reported later)."""
    match = _occurred(raw)
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
