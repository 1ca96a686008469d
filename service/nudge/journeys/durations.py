"""Durations and local times as the journeys file writes them: `60m`, `24h`, `3d`, `"09:00"`."""

from __future__ import annotations

import re
from datetime import time
from typing import Final

MS_PER_UNIT: Final = {
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_LOCAL_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_duration_ms(text: object) -> int:
    """Milliseconds in `text` (`90s`, `60m`, `24h`, `3d`, `2w`); ValueError with a hint otherwise.

    Negative values parse, so that the validator can say "must not be negative" rather than
    "not a duration".
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError("a duration is a number with a unit, e.g. 60m, 24h or 3d")
    if isinstance(text, int):
        raise ValueError(f"{text} has no unit; write e.g. {text}m, {text}h or {text}d")
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration")
    return round(float(match.group(1)) * MS_PER_UNIT[match.group(2)])


def parse_local_time(text: object) -> time:
    """A wall-clock time of day written `HH:MM` (24-hour), e.g. `"09:00"`."""
    if not isinstance(text, str) or (match := _LOCAL_TIME.match(text)) is None:
        raise ValueError(f'{text!r} is not a time of day; write it quoted as "HH:MM", e.g. "09:00"')
    return time(int(match.group(1)), int(match.group(2)))


def format_duration(ms: int) -> str:
    """The shortest exact spelling of `ms` in the journeys-file units."""
    for unit in ("d", "h", "m", "s"):
        size = MS_PER_UNIT[unit]
        if ms % size == 0 and ms != 0:
            return f"{ms // size}{unit}"
    return f"{ms / 1000:g}s"
