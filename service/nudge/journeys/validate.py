"""`nudge validate [PATH]`: check a journeys file; exit 0, or 2 listing file:line: field: problem
(2: bad input, as for every `nudge` command; `nudge.commandline`).

Without PATH it checks the file the processor would load (`NUDGE_JOURNEYS`, default the shipped
one). On success it prints one line per journey: its kind, trigger and steps with their waits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nudge.commandline import USAGE
from nudge.errors import ConfigError
from nudge.journeys.config import Journey, Step
from nudge.journeys.durations import format_duration
from nudge.journeys.loader import load_journeys
from nudge.journeys.yamlsource import JourneysFileError
from nudge.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", type=Path, help="journeys file (default: NUDGE_JOURNEYS or shipped)"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")


def main(args: argparse.Namespace, settings: Settings) -> int:
    path = args.path or settings.journeys_path
    try:
        config = load_journeys(
            path, named_by="the PATH argument" if args.path else "NUDGE_JOURNEYS"
        )
    except JourneysFileError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        count = len(err.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return USAGE
    except ConfigError as err:
        print(f"{path}: {err}", file=sys.stderr)
        return USAGE
    if not args.quiet:
        print(f"{path}: OK, {len(config.journeys)} journeys")
        for journey in config.journeys:
            print(f"  {describe(journey)}")
    return 0


def describe(journey: Journey) -> str:
    trigger = journey.trigger
    if trigger.calendar is not None:
        start = f"calendar {trigger.calendar}"
    else:
        start = " | ".join(trigger.events) + (f" when {trigger.when}" if trigger.when else "")
    steps = ", ".join(_step(s) for s in journey.steps)
    flags = "" if journey.enabled else " (disabled)"
    return f"{journey.name} [{journey.kind}] {start} -> {steps}{flags}"


def _step(step: Step) -> str:
    wait = step.wait
    parts = []
    if wait.delay_ms:
        after = " after trigger" if wait.anchor == "trigger" else ""
        parts.append(f"+{format_duration(wait.delay_ms)}{after}")
    if wait.anchor in ("start", "end"):
        parts.append(
            f"campaign {wait.anchor}{wait.days:+d}d" if wait.days else f"campaign {wait.anchor}"
        )
    if wait.on is not None:
        parts.append(wait.on.isoformat())
    if wait.at is not None:
        parts.append(f"at {wait.at.strftime('%H:%M')}")
    return f"{step.name}({' '.join(parts) or 'at once'})"
