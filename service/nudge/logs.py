"""structlog, configured once per process: JSON lines (orjson) in production, console for humans.

Bind `user_id`, `journey`, `step`, `command_id` where they are known (`structlog.contextvars.
bound_contextvars(...)` around the handling of one record); never log a mail body or a full address
(use `mask_email`). The pipeline masks them anyway as a second line of defence: values under an
address key are masked and values under a body key are replaced by their length.

    shared processors (contextvars, level, time, service, redact)  ─┬─ structlog loggers
                                                                    └─ stdlib loggers (faust,
    renderer: JSONRenderer(orjson) one line per event, or Console      aiokafka, mode) via
                                                                       ProcessorFormatter
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping, Sequence
from typing import Any, TextIO

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from nudge.commandline import FAILURE, KAFKA_HINT, error

ADDRESS_KEYS = frozenset({"to", "email", "address", "recipient", "rcpt", "mail_to"})
"""Event keys whose values are e-mail addresses: logged as `h***@example.jp`."""

BODY_KEYS = frozenset({"body", "html", "html_body", "text_body", "mime", "message_body"})
"""Event keys whose values are mail content: logged as `<omitted: N chars>`."""


def mask_email(address: str | None) -> str | None:
    """`hana@example.jp` → `h***@example.jp`: enough to debug a domain, not to identify a person."""
    if not address or "@" not in address:
        return address
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask addresses and drop bodies that a call site passed by mistake (a pure processor)."""
    for key in ADDRESS_KEYS & event_dict.keys():
        value = event_dict[key]
        if isinstance(value, str):
            event_dict[key] = mask_email(value) if "@" in value else value
    for key in BODY_KEYS & event_dict.keys():
        value = event_dict[key]
        size = len(value) if isinstance(value, str | bytes) else 0
        event_dict[key] = f"<omitted: {size} chars>"
    return event_dict


def add_service(service: str | None) -> Processor:
    """A processor that stamps every event with the service name (`processor`, `sender`, …)."""

    def processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        if service is not None:
            event_dict.setdefault("service", service)
        return event_dict

    return processor


def shared_processors(service: str | None = None) -> list[Processor]:
    """Everything before rendering, for structlog's own loggers and the standard library's."""
    return [
        structlog.contextvars.merge_contextvars,
        _add_library_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service(service),
        redact,
    ]


def configure(
    *,
    fmt: str = "json",
    level: str = "INFO",
    service: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and the standard library's logging through one pipeline to `stream`.

    `fmt="json"`: one JSON object per line (orjson), for log collectors. `fmt="console"`: aligned,
    coloured when a terminal is attached, for `make run`. `stream` defaults to stderr.
    """
    out = sys.stderr if stream is None else stream
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    shared = shared_processors(service)
    console = fmt == "console"
    if console:
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer(colors=_is_tty(out))],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.PrintLoggerFactory(file=out),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.dict_tracebacks,
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.BytesLoggerFactory(file=out.buffer),
            cache_logger_on_first_use=True,
        )
    # Libraries (faust, aiokafka, mode) log through the standard library: same format, and only
    # their warnings, since their INFO lines are per-partition chatter.
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(stdlib_handler(fmt=fmt, service=service, stream=out))
    root.setLevel(max(numeric_level, logging.WARNING))


def stdlib_handler(
    *, fmt: str = "json", service: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """A logging.Handler rendering standard-library records like structlog's (for Faust's
    `loghandlers`, which otherwise installs its own plain-text handler)."""
    out = sys.stderr if stream is None else stream
    final: Sequence[Processor]
    if fmt == "console":
        final = [structlog.dev.ConsoleRenderer(colors=_is_tty(out))]
    else:
        final = [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer(_dumps)]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors(service),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    return handler


def _add_library_logger_name(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    # Only standard-library records have a meaningful name (`aiokafka.consumer`, `faust.worker`);
    # structlog's own Bytes/Print loggers have none.
    record = event_dict.get("_record")
    if record is not None:
        event_dict["logger"] = record.name
    return event_dict


def _dumps(obj: MutableMapping[str, Any], **kw: Any) -> str:
    # The standard library's handlers write text; structlog's own path writes orjson's bytes.
    return orjson.dumps(obj, default=kw.get("default", str)).decode()


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def kafka_unreachable(
    command: str, bootstrap: str, err: Exception, *, stopped: bool = False
) -> int:
    """Report that the service `command` cannot reach the broker at `bootstrap`: the ERROR log
    line `<command>.kafka_unreachable` (bootstrap, error, hint) for log collectors, the one-line
    error with `commandline.KAFKA_HINT` for the person at the terminal; returns FAILURE.

    The line says `cannot reach Kafka at HOST:PORT` when the service was only starting; a
    service whose whole run ends here (`stopped`: the sender) says `stopped: Kafka at HOST:PORT:
    ERROR`, since it may have served for days and the error tells what happened.
    """
    structlog.get_logger(f"nudge.{command}").error(
        f"{command}.kafka_unreachable", bootstrap=bootstrap, error=repr(err), hint=KAFKA_HINT
    )
    if stopped:
        error(command, f"stopped: Kafka at {bootstrap}: {err}", hint=KAFKA_HINT)
    else:
        error(command, f"cannot reach Kafka at {bootstrap}", hint=KAFKA_HINT)
    return FAILURE
