"""`nudge.logs.kafka_unreachable`: the one report every service gives of a broker it
cannot reach (the processor at start, the sender when its run ends on it)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError
from structlog.testing import capture_logs

from nudge.commandline import FAILURE
from nudge.logs import kafka_unreachable

BOOTSTRAP = "127.0.0.1:1"
HINT = "start a broker (make kafka) or set KAFKA_BOOTSTRAP_SERVERS"


@pytest.mark.parametrize(
    ("command", "stopped", "line"),
    [
        ("processor", False, f"nudge processor: cannot reach Kafka at {BOOTSTRAP}; {HINT}"),
        (
            "sender",
            True,
            f"nudge sender: stopped: Kafka at {BOOTSTRAP}: KafkaConnectionError: refused; {HINT}",
        ),
    ],
)
def test_an_unreachable_broker_is_one_log_line_one_stderr_line_and_exit_code_1(
    command: str, stopped: bool, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ERROR log line names the service, the broker and the error; stderr has the one line
    with the fix; the exit code is 1 (a failure while running, not bad input)."""
    err = KafkaConnectionError("refused")
    with capture_logs() as logs:
        code = kafka_unreachable(command, BOOTSTRAP, err, stopped=stopped)
    assert code == FAILURE == 1
    assert capsys.readouterr().err.splitlines() == [line]
    assert logs == [
        {
            "event": f"{command}.kafka_unreachable",
            "log_level": "error",
            "bootstrap": BOOTSTRAP,
            "error": repr(err),
            "hint": HINT,
        }
    ]
