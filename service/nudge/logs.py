"""structlog, configured once per process: JSON lines (orjson) in production, console for humans.

Bind `user_id`, `journey`, `step`, `command_id` where they are known; never log a mail body or a
full address (use `mask_email`).
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog


def configure(*, fmt: str = "json", level: str = "INFO") -> None:
    """Route structlog and the standard library's logging through one pipeline to stderr."""
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "console":
        renderer: structlog.types.Processor = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty()
        )
        structlog.configure(
            processors=[*shared, structlog.processors.format_exc_info, renderer],
            wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
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
            logger_factory=structlog.BytesLoggerFactory(file=sys.stderr.buffer),
            cache_logger_on_first_use=True,
        )
    # Libraries (faust, aiokafka, mode) log through the standard library: keep their warnings.
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr, force=True)


def mask_email(address: str | None) -> str | None:
    """`hana@example.jp` → `h***@example.jp`: enough to debug a domain, not to identify a person."""
    if not address or "@" not in address:
        return address
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"
