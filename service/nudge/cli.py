"""The `nudge` command line (SPEC §6).

Each subcommand lives in the module of its concern and exposes `add_arguments(parser)` and
`main(args, settings) -> int`; only the chosen one is imported, so `nudge validate` does not pay
for loading Faust.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nudge.errors import ConfigError
from nudge.settings import Settings

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
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        _print_usage(unknown=args[0] if args and args[0] not in ("-h", "--help") else None)
        return 0 if not args or args[0] in ("-h", "--help") else 2
    name = args[0]
    module_path, summary = COMMANDS[name]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(prog=f"nudge {name}", description=summary)
    module.add_arguments(parser)
    parsed = parser.parse_args(args[1:])
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        print(f"nudge {name}: configuration error: {err}", file=sys.stderr)
        return 2
    result: int = module.main(parsed, settings)
    return result


def _print_usage(*, unknown: str | None) -> None:
    out = sys.stderr if unknown else sys.stdout
    if unknown:
        print(f"nudge: unknown command {unknown!r}\n", file=out)
    print("usage: nudge COMMAND [options]   (nudge COMMAND --help for its options)\n", file=out)
    width = max(map(len, COMMANDS))
    for name, (_, summary) in COMMANDS.items():
        print(f"  {name:<{width}}  {summary}", file=out)


if __name__ == "__main__":
    sys.exit(main())
