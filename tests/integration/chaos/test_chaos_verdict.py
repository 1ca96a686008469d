"""The chaos verdict's rules (chaos/verdict.py), pure: no Kafka, no processes."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from chaos.stack import Accepted
from chaos.verdict import Evidence, Fault, attribute, judge

KILL = Fault("kill_sender", 100.0, 104.0)
DOWN = Fault("smtp_down", 200.0, 230.0)
BROKER = Fault("broker_restart", 300.0, 320.0)
LATE_KILL = Fault("kill_sender", 321.0, 324.0)


@pytest.mark.parametrize(
    ("accepted_at", "resent_at", "faults", "expected"),
    [
        (98.0, 106.0, [KILL], KILL),  # accepted 2 s before the sender died: its record was lost
        (80.0, 106.0, [KILL], None),  # 20 s before: the record had long been written
        (105.0, 108.0, [KILL], None),  # after the crash: nothing explains a second copy
        (98.0, 99.0, [KILL], None),  # sent twice *before* the crash: the crash cannot explain it
        (199.5, 231.0, [DOWN], DOWN),  # the server cut the connection before the 250 arrived
        (199.5, 199.8, [DOWN], None),  # the second copy came before the outage: not its doing
        (231.0, 240.0, [DOWN], None),
        (305.0, 325.0, [BROKER, LATE_KILL], LATE_KILL),  # record unwritable until the broker
        (305.0, 325.0, [BROKER], None),  # the sender survived: it wrote the record late
        # accepted 50 s before the broker went down: that record was written; the outage and
        # the later crash explain nothing about it
        (250.0, 325.0, [BROKER, LATE_KILL], None),
    ],
)
def test_a_duplicate_is_attributed_to_the_fault_that_lost_its_record(
    accepted_at: float, resent_at: float, faults: list[Fault], expected: Fault | None
) -> None:
    """Only a sender crash or an SMTP outage shortly after an acceptance, and before the next
    copy of that mail, explains the next copy."""
    assert attribute(accepted_at, faults, window=10.0, resent_at=resent_at) == expected


def evidence(**overrides: object) -> Evidence:
    base: dict[str, object] = {
        "expected": {"k1": "welcome/welcome", "k2": "order_confirmation/confirmation"},
        "emitted": Counter({"k1": 1, "k2": 2}),
        "sender_dlt": {},
        "accepted": [Accepted("k1", 10.0, False), Accepted("k2", 11.0, False)],
        "events_dlt": [(b"bad", "malformed_json")],
        "malformed": [b"bad"],
        "faults": [],
        "ready": {"processor": True, "sender": True},
    }
    base.update(overrides)
    return Evidence(**base)  # type: ignore[arg-type]


def test_everything_once_passes() -> None:
    """All mails once, all commands (repeats allowed), the bad record dead-lettered: PASS."""
    verdict = judge(evidence())
    assert verdict.passed, verdict.line
    assert verdict.line.startswith("PASS")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"accepted": [Accepted("k1", 10.0, False)]}, "missing_mail"),
        (
            {"accepted": [Accepted("k1", 10, False), Accepted("k2", 11, False)] * 2},
            "unexplained_duplicates",
        ),
        ({"emitted": Counter({"k1": 1})}, "missing_commands"),
        ({"emitted": Counter({"k1": 1, "k2": 1, "k3": 1})}, "extra_commands"),
        ({"events_dlt": []}, "malformed_not_dead_lettered"),
        (
            {"events_dlt": [(b"bad", "malformed_json"), (b"good", "x")]},
            "valid_events_dead_lettered",
        ),
        ({"events_dlt": [(b"bad", "")]}, "dead_letters_without_reason"),
        ({"malformed_reasons": {b"bad": "too_large"}}, "dead_letters_with_another_reason"),
        (
            {"accepted": [Accepted("k1", 10.0, True), Accepted("k2", 11.0, False)]},
            "injected_headers",
        ),
        (
            {
                "recipients": {"k1": "u-1@example.com"},
                "accepted": [
                    Accepted("k1", 10, False, "u-2@example.com"),
                    Accepted("k2", 11, False),
                ],
            },
            "wrong_recipient",
        ),
        ({"ready": {"processor": False, "sender": True}}, "services_not_ready"),
    ],
)
def test_each_broken_promise_fails_the_run(overrides: dict[str, object], problem: str) -> None:
    """Every rule of issue 8 is a counted problem that turns the verdict into FAIL."""
    verdict = judge(evidence(**overrides))
    assert not verdict.passed
    assert verdict.details["problems"][problem] > 0
    assert verdict.line.startswith("FAIL")


def test_a_hostile_command_may_be_refused_but_nothing_else() -> None:
    """CR/LF bound for a header: dead-lettered `unsafe_header` is a pass, other mail is not."""
    only_k1 = {"accepted": [Accepted("k1", 10.0, False)]}
    refused = judge(evidence(**only_k1, hostile={"k2"}, sender_dlt={"k2": "unsafe_header"}))
    assert refused.passed, refused.line
    assert refused.details["hostile_refused_unsafe_header"] == 1
    not_hostile = judge(evidence(**only_k1, sender_dlt={"k2": "unsafe_header"}))
    assert not not_hostile.passed
    other_reason = judge(evidence(**only_k1, hostile={"k2"}, sender_dlt={"k2": "smtp_554"}))
    assert not other_reason.passed


def copies(*times: float) -> list[Accepted]:
    return [Accepted("k1", 10.0, False), *(Accepted("k2", at, False) for at in times)]


def test_a_copy_sent_before_the_crash_is_a_duplicate_no_fault_explains() -> None:
    """Two copies 1 s apart, the sender killed 4 s later: the kill came after both, so the
    second copy is a bug, however close the kill."""
    verdict = judge(evidence(accepted=copies(95.0, 96.0), faults=[KILL], ambiguous=[5]))
    assert not verdict.passed
    assert verdict.details["problems"]["unexplained_duplicates"] == 1


def test_each_extra_copy_needs_its_own_fault() -> None:
    """Three copies around one kill: the one after the kill is explained, the third, sent
    again with no new fault, is not (judging every copy by the first hid it)."""
    verdict = judge(evidence(accepted=copies(99.0, 104.5, 105.0), faults=[KILL], ambiguous=[5]))
    assert verdict.details["duplicates"] == 2
    assert verdict.details["problems"]["unexplained_duplicates"] == 1
    assert [c["fault"] for c in verdict.details["duplicate_copies"]] == [KILL.label, None]
    assert not verdict.passed


def test_a_copy_resent_after_the_crash_that_lost_its_record_passes() -> None:
    """The SMTP window: accepted 1 s before the kill, sent again by the restarted sender."""
    verdict = judge(evidence(accepted=copies(99.0, 104.5), faults=[KILL], ambiguous=[1]))
    assert verdict.passed, verdict.line
    assert verdict.details["faults"][KILL.label]["duplicates"] == 1
    assert verdict.details["faults"][KILL.label]["longest_window_s"] == 1.0
