"""What every `nudge` subcommand shares: its exit codes, its one-line error (and the report of a
broker it cannot reach), argument types that refuse a meaningless value by name, and a help
formatter that shows defaults.

Exit codes, the same for every command: 0 done; 2 what it was given is wrong (an argument, a
file it names, the configuration, the installation) — fix that and run it again; 1 something
failed while it ran (a broker or a port it could not reach). Tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Final, TypeVar

USAGE: Final = 2
FAILURE: Final = 1
# The fix `logs.kafka_unreachable` (and `nudge produce`) name for a broker out of reach.
KAFKA_HINT: Final = "start a broker (make kafka) or set KAFKA_BOOTSTRAP_SERVERS"

Number = TypeVar("Number", int, float)


def error(command: str, message: str, *, hint: str = "") -> None:
    """One line on stderr: `nudge COMMAND: what and where; how to fix it`."""
    print(f"nudge {command}: {message}" + (f"; {hint}" if hint else ""), file=sys.stderr)


def reason(err: OSError, path: object) -> str:
    """Why `path` could not be used: the system's words, naming the file they are about when that
    is another one (a parent that is a file, say)."""
    about = err.filename
    if isinstance(err, FileExistsError):  # what `mkdir(exist_ok=True)` says of a file
        return f"{about or path} is a file, not a folder"
    if isinstance(err, NotADirectoryError):  # `a-file/x`
        return f"a folder in {about or path} is a file"
    if about is not None and str(about) != str(path):
        return f"{about}: {err.strerror}"
    return str(err.strerror or err)


def number(
    kind: Callable[[str], Number], *, at_least: Number | None = None, above: Number | None = None
) -> Callable[[str], Number]:
    """An argparse type: a finite number of `kind`, at least `at_least` or above `above`."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if at_least is not None and not (math.isfinite(value) and value >= at_least):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {at_least:g} or more (got {text})"
            )
        if above is not None and not (math.isfinite(value) and value > above):
            raise argparse.ArgumentTypeError(
                f"must be a finite number more than {above:g} (got {text})"
            )
        return value

    return parse


def port(*, zero: str = "") -> Callable[[str], int]:
    """An argparse type: a TCP port, 1 to 65535; 0 too when `zero` says what it means."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
        lowest = 0 if zero else 1
        if not lowest <= value <= 65535:
            meaning = f" (0: {zero})" if zero else ""
            raise argparse.ArgumentTypeError(f"a port is {lowest} to 65535{meaning}, not {text}")
        return value

    return parse


def ratio(text: str) -> float:
    """An argparse type: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"a share is from 0 to 1, e.g. 0.1 (got {text})")
    return value


def not_empty(text: str) -> str:
    """An argparse type: any text but the empty one (which would silently mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out for the default)")
    return text


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds `(default: X)` to an option's help, unless it has no default to show (None, False,
    an empty list) or its help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default in ([], "")
        if nothing or "default" in text:
            return text
        return super()._get_help_string(action)
