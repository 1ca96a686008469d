"""Logs: one JSON object per line, ids bound, addresses masked, bodies never written."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from nudge import logs


class Sink:
    """A text stream over bytes, like stderr: structlog writes bytes, logging writes text."""

    def __init__(self) -> None:
        self.raw = io.BytesIO()
        self.stream = io.TextIOWrapper(self.raw, encoding="utf-8", write_through=True)

    def lines(self) -> list[bytes]:
        self.stream.flush()
        return self.raw.getvalue().splitlines()

    def records(self) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in self.lines()]


@pytest.fixture
def sink() -> Iterator[Sink]:
    """Configure logging into a fresh sink; restore structlog's and logging's defaults after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield Sink()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("hana@example.jp", "h***@example.jp"),
        ("a@b.c", "a***@b.c"),
        ("odd@local@example.com", "o***@example.com"),
        ("not-an-address", "not-an-address"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_email(address: str | None, masked: str | None) -> None:
    """Only the first letter and the domain of an address survive."""
    assert logs.mask_email(address) == masked


def test_json_is_one_object_per_line_with_bound_ids(sink: Sink) -> None:
    """Each event is one orjson line carrying level, time, service and the bound ids."""
    logs.configure(fmt="json", level="INFO", service="sender", stream=sink.stream)
    log = structlog.get_logger()
    with structlog.contextvars.bound_contextvars(
        user_id="u-42", journey="cart_abandonment", step="reminder_1", command_id="c-1"
    ):
        log.info("mail.sent", smtp_code=250, subject="カートに商品が残っています\nX-Evil: 1")
    log.info("second")
    first, second = sink.records()
    assert first["event"] == "mail.sent"
    assert first["level"] == "info"
    assert first["service"] == "sender"
    assert str(first["timestamp"]).endswith("Z")
    assert {k: first[k] for k in ("user_id", "journey", "step", "command_id")} == {
        "user_id": "u-42",
        "journey": "cart_abandonment",
        "step": "reminder_1",
        "command_id": "c-1",
    }
    assert first["subject"] == "カートに商品が残っています\nX-Evil: 1"
    assert "user_id" not in second
    assert len(sink.lines()) == 2  # the newline inside a value stays escaped


def test_level_filters_below_threshold(sink: Sink) -> None:
    """At INFO, debug events are dropped before any processing."""
    logs.configure(fmt="json", level="info", stream=sink.stream)
    structlog.get_logger().debug("noise")
    structlog.get_logger().warning("kept")
    assert [r["event"] for r in sink.records()] == ["kept"]


def test_exceptions_are_structured_on_one_line(sink: Sink) -> None:
    """An exception becomes a JSON traceback inside the same line, not a multi-line dump."""
    logs.configure(fmt="json", stream=sink.stream)
    try:
        raise ValueError("bad template")
    except ValueError:
        structlog.get_logger().exception("render.failed")
    (record,) = sink.records()
    assert record["level"] == "error"
    assert isinstance(record["exception"], list)
    assert "bad template" in sink.lines()[0].decode()


def test_library_logs_share_the_json_format(sink: Sink) -> None:
    """Standard-library records (aiokafka, faust) come out as JSON lines too; INFO chatter not."""
    logs.configure(fmt="json", level="INFO", service="processor", stream=sink.stream)
    logging.getLogger("aiokafka.consumer").info("partition assigned")
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed for %s", "group-1")
    (record,) = sink.records()
    assert record["event"] == "heartbeat failed for group-1"
    assert record["logger"] == "aiokafka.consumer"
    assert record["level"] == "warning"
    assert record["service"] == "processor"


def test_console_format_is_for_humans(sink: Sink) -> None:
    """`make run` logs are readable text lines, not JSON, with the bound ids shown."""
    logs.configure(fmt="console", stream=sink.stream)
    structlog.get_logger().info("mail.sent", journey="welcome")
    (line,) = sink.lines()
    assert b"mail.sent" in line
    assert b"journey=welcome" in line
    assert not line.startswith(b"{")


def test_redact_masks_addresses_and_omits_bodies() -> None:
    """A careless call site passing `to=` or `body=` still cannot leak them into the logs."""
    with capture_logs(processors=logs.shared_processors("sender")) as captured:
        structlog.get_logger().info(
            "mail.sent",
            to="hana@example.jp",
            email="taro@example.com",
            body="秘密の本文",
            html=b"<p>",
        )
    (entry,) = captured
    assert entry["to"] == "h***@example.jp"
    assert entry["email"] == "t***@example.com"
    assert entry["body"] == "<omitted: 5 chars>"
    assert entry["html"] == "<omitted: 3 chars>"
    assert entry["service"] == "sender"


def test_contextvars_reach_captured_events() -> None:
    """Ids bound around the handling of one record appear on every event logged inside it."""
    with (
        capture_logs(processors=logs.shared_processors()) as captured,
        structlog.contextvars.bound_contextvars(user_id="u-1", command_id="c-9"),
    ):
        structlog.get_logger().info("decided")
    assert captured[0]["user_id"] == "u-1"
    assert captured[0]["command_id"] == "c-9"
