"""The `nudge` command line (SPEC §6).

Each subcommand lives in the module of its concern and exposes `add_arguments(parser)` and
`main(args, settings) -> int`; only the chosen one is imported, so `nudge validate` does not pay
for loading Faust. Exit codes and the one-line error format are `nudge.commandline`'s: 0 done,
2 bad input (arguments, files, configuration, installation), 1 a failure while running.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from typing import Final, TextIO

from nudge.commandline import FAILURE, USAGE, HelpFormatter, error
from nudge.errors import ConfigError, NudgeError, TransientError
from nudge.settings import Settings

# The module that refuses a compiled engine older than its source (`ImportError.name`).
STALE_BUILD_CHECK: Final = "nudge.journeys.compiled"

COMMANDS: dict[str, tuple[str, str]] = {
    "processor": ("nudge.processor.cli", "run the stream processor (a Faust worker)"),
    "sender": ("nudge.sender.cli", "run the sender: send commands in, SMTP out"),
    "validate": ("nudge.journeys.validate", "check a journeys file"),
    "simulate": ("nudge.journeys.simulate", "run the journeys offline over a JSONL event log"),
    "generate-events": ("nudge.journeys.synth", "write a realistic synthetic JSONL event log"),
    "produce": ("nudge.produce", "publish a JSONL file of events to the events topic"),
    "smtp-sink": ("nudge.sender.sink", "a local SMTP server that stores what it receives"),
    "render": ("nudge.sender.render", "preview a mail template with variables"),
    "web": ("nudge.links.web", "serve unsubscribe, open-pixel and click links"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        _print_usage(out=sys.stderr)
        return USAGE
    first = args[0]
    if first in ("-h", "--help") or (first == "help" and len(args) == 1):
        _print_usage(out=sys.stdout)
        return 0
    if first == "help":  # `nudge help render` is `nudge render --help`
        return main([args[1], "--help"])
    if first == "--version":
        print(f"nudge {_version()}")
        return 0
    if first not in COMMANDS:
        print(f"nudge: unknown command {first!r}\n", file=sys.stderr)
        _print_usage(out=sys.stderr)
        return USAGE
    try:
        return _run(first, args[1:])
    except KeyboardInterrupt:
        return 130
    except ImportError as err:
        if err.name != STALE_BUILD_CHECK:
            raise
        # The message says what to do; the 28 lines of import machinery above it do not.
        error(first, str(err))
        return USAGE


def _run(name: str, argv: list[str]) -> int:
    module_path, summary = COMMANDS[name]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(
        prog=f"nudge {name}", description=summary, formatter_class=HelpFormatter
    )
    module.add_arguments(parser)
    parsed = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        error(name, f"configuration error: {err}")
        return USAGE
    try:
        result: int = module.main(parsed, settings)
    except BrokenPipeError:  # `nudge simulate | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILURE
    except (NudgeError, OSError) as err:
        # A safety net: each command reports the errors it expects with their hint; one it
        # did not expect still gets one line, and its traceback when the log level asks for it.
        if settings.log_level.upper() == "DEBUG":
            traceback.print_exc()
        error(name, str(err) or type(err).__name__, hint="NUDGE_LOG_LEVEL=DEBUG shows where")
        return FAILURE if isinstance(err, OSError | TransientError) else USAGE
    return result


def _version() -> str:
    try:
        return metadata.version("nudge")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _print_usage(*, out: TextIO) -> None:
    print("usage: nudge COMMAND [options]   (nudge COMMAND --help for its options)\n", file=out)
    width = max(map(len, COMMANDS))
    for name, (_, summary) in COMMANDS.items():
        print(f"  {name:<{width}}  {summary}", file=out)
    print(f"\n  {'--version':<{width}}  print the version", file=out)


if __name__ == "__main__":
    sys.exit(main())
