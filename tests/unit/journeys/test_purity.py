"""The engine is a functional core: no clock, no Kafka, Faust or SMTP, same answer every time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from journeys.kit import HANA, SHIPPED, at, ev
from nudge.commands import DeliveryRecord
from nudge.journeys import Engine

PACKAGE = Path(__file__).resolve().parents[3] / "service" / "nudge" / "journeys"
FORBIDDEN_MODULES = {"faust", "aiokafka", "aiosmtplib", "aiosmtpd", "mode", "time", "asyncio"}
CLOCK_CALLS = {"now", "utcnow", "today", "monotonic", "perf_counter"}  # `time` itself is banned


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_module_of_the_engine_reads_a_clock_or_imports_io(path: Path) -> None:
    """No import of Kafka, Faust, SMTP or time, and no call like datetime.now() or date.today()."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names = {(node.module or "").split(".")[0]}
        else:
            names = set()
        assert not names & FORBIDDEN_MODULES, (path.name, names)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in CLOCK_CALLS, (path.name, node.lineno)


def test_unknown_event_types_are_ignored_with_a_reason() -> None:
    """An event type Nudge does not know yet is recorded as `unknown_type` and changes nothing."""
    T0 = at("2026-11-22 10:00")
    outcome = Engine(SHIPPED).on_event(None, ev("app.opened", T0, user=HANA), T0)
    assert [(d.outcome, d.reason) for d in outcome.decisions] == [("ignored", "unknown_type")]
    assert outcome.commands == ()
    assert outcome.state is not None
    assert outcome.state.email is None


def test_a_delivery_record_for_an_unknown_user_stores_nothing() -> None:
    """on_delivery without state (a deleted user) returns no state and no policy."""
    T0 = at("2026-11-22 10:00")
    record = DeliveryRecord(command_id="c", idempotency_key="k", user_id="gone", status="sent",
                            attempt=1, at=T0)  # fmt: skip
    outcome = Engine(SHIPPED).on_delivery(None, record, T0)
    assert (outcome.state, outcome.policy, outcome.decisions) == (None, None, ())
