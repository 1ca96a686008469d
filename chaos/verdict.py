"""The verdict: a pure comparison of what the stack did under faults with the fault-free run.

Rules (issue 8):
- every send command of the fault-free run was emitted (by idempotency key), and nothing else;
- every one of them reached the SMTP server (no mail missing), and nothing else did; a command
  carrying CR/LF for a header may instead be dead-lettered `unsafe_header` by the sender;
- no mail twice, except in the one window SMTP leaves open: a copy accepted shortly before the
  sender died or the SMTP server cut its connections (the reply or its record was lost). Every
  extra copy is attributed to such a fault between it and the copy before it, or counted as
  unexplained (a FAIL);
- every malformed record is in the events dead-letter topic with a reason, and no valid one is;
- no received mail shows an injected header or goes to another recipient than its command's;
- the services answer /readyz at the end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from chaos.stack import Accepted

SENDER_CRASHES = ("kill_sender", "exit_sender")


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # kill_processor, kill_sender, exit_*, smtp_down, smtp_flaky, broker_restart
    at: float  # time.time() when injected (or when an unexpected exit was seen)
    until: float  # when it ended (== at for an instant)
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.at:.1f}"


@dataclass
class Evidence:
    expected: dict[str, str]  # idempotency key -> "journey/step", from the fault-free run
    emitted: Counter[str]  # idempotency keys on the send-commands topic, with repeats
    sender_dlt: dict[str, str]  # idempotency key -> reason, from send-commands-dlt
    accepted: list[Accepted]  # what the SMTP server answered 250 to
    events_dlt: list[tuple[bytes | None, str]]  # (original value, nudge-error-reason)
    malformed: list[bytes]  # records that must be dead-lettered
    faults: list[Fault]
    ready: dict[str, bool]
    malformed_reasons: dict[bytes, str] = field(default_factory=dict)  # the codec's own reason
    recipients: dict[str, str] = field(default_factory=dict)  # key -> `to` of the command
    hostile: set[str] = field(default_factory=set)  # keys whose command carries CR/LF for a header
    ambiguous: list[int] = field(default_factory=list)  # the sender's own count after each restart
    window: float = 10.0  # seconds before a fault in which an acceptance may be lost
    started: float = 0.0


@dataclass
class Verdict:
    passed: bool
    line: str
    details: dict[str, Any] = field(default_factory=dict)


def attribute(
    accepted_at: float, faults: list[Fault], window: float, *, resent_at: float
) -> Fault | None:
    """The fault that lost the record of a mail the SMTP server accepted at `accepted_at`, so
    that it was accepted again at `resent_at`. The fault must come before that next copy: a
    crash after both copies explains neither.

    - the first sender crash after the acceptance, if it came within `window` seconds (the
      reply or its record was in flight), or later if the broker went down around the
      acceptance (within `window` of it, either side of the outage) before that crash: the
      sender could not write the record while the broker was away, and then it crashed;
    - else the SMTP server going down within `window` seconds after it (connection cut before
      the 250 reached the sender).
    None: a duplicate no fault explains, a bug.
    """
    crashes = sorted(
        # 0.5 s of slack before: a kill is stamped just before the signal, and the server may
        # finish a transaction whose client is already gone.
        (f for f in faults if f.kind in SENDER_CRASHES and f.at >= accepted_at - 0.5),
        key=lambda f: f.at,
    )
    if crashes and crashes[0].at <= resent_at:
        crash = crashes[0]
        broker_down_around = any(
            f.kind == "broker_restart"
            and f.at <= crash.at
            and f.at - window <= accepted_at <= f.until + window
            for f in faults
        )
        if crash.at - accepted_at <= window or broker_down_around:
            return crash
    for f in faults:
        cut_it = f.kind == "smtp_down" and f.at - window <= accepted_at <= f.at + 1.0
        if cut_it and f.at <= resent_at:
            return f
    return None


def _sample(keys: set[str] | list[str], n: int = 10) -> list[str]:
    return sorted(keys)[:n]


def judge(ev: Evidence) -> Verdict:
    expected = set(ev.expected)
    emitted = set(ev.emitted)
    copies = Counter(a.key for a in ev.accepted)
    received = set(copies)
    missing_commands = expected - emitted
    extra_commands = emitted - expected
    # A hostile command may be refused by the sender (SPEC §5: no value can add a header).
    refused = {k for k in ev.hostile - received if ev.sender_dlt.get(k) == "unsafe_header"}
    missing_mail = expected - received - refused
    unexpected_mail = received - expected
    injected = sorted({a.key for a in ev.accepted if a.injected})
    misrouted = sorted(
        {a.key for a in ev.accepted if a.key in ev.recipients and a.rcpt != ev.recipients[a.key]}
    )

    # Each copy after the first is explained by the fault that lost the record of the copy
    # before it, and that fault must fall between the two.
    times: dict[str, list[float]] = {}
    for a in sorted(ev.accepted, key=lambda a: a.at):
        times.setdefault(a.key, []).append(a.at)
    by_fault: Counter[str] = Counter()
    gaps: dict[str, float] = {}  # per fault: the longest time from a lost acceptance to it
    unexplained: list[str] = []
    audit: list[dict[str, Any]] = []
    for key, at in times.items():
        for previous, again in pairwise(at):
            fault = attribute(previous, ev.faults, ev.window, resent_at=again)
            audit.append(
                {
                    "key": key,
                    "accepted_s": round(previous - ev.started, 3),
                    "again_s": round(again - ev.started, 3),
                    "fault": None if fault is None else fault.label,
                }
            )
            if fault is None:
                unexplained.append(key)
                continue
            by_fault[fault.label] += 1
            gap = round(fault.at - previous, 3)
            gaps[fault.label] = max(gaps.get(fault.label, gap), gap)
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    crash_labels = {f.label for f in ev.faults if f.kind in ("kill_sender", "exit_sender")}
    crash_duplicates = sum(n for label, n in by_fault.items() if label in crash_labels)
    beyond_ambiguous = max(0, crash_duplicates - sum(ev.ambiguous))

    dlt_values = Counter(value for value, _ in ev.events_dlt)
    reasons = {value: reason for value, reason in ev.events_dlt}
    malformed = Counter(ev.malformed)
    not_dead_lettered = [m for m, n in malformed.items() if dlt_values[m] < n]
    without_reason = [m for m in malformed if m in reasons and not reasons[m]]
    wrong_reason = [
        m
        for m in malformed
        if m in reasons and ev.malformed_reasons.get(m) and reasons[m] != ev.malformed_reasons[m]
    ]
    wrongly_dead_lettered = [v for v in dlt_values if v not in malformed]
    dlt_reasons = Counter(reason for value, reason in ev.events_dlt if value in malformed)

    problems = {
        "missing_mail": len(missing_mail),
        "unexpected_mail": len(unexpected_mail),
        "unexplained_duplicates": len(unexplained),
        "crash_duplicates_beyond_ambiguous": beyond_ambiguous,
        "missing_commands": len(missing_commands),
        "extra_commands": len(extra_commands),
        "malformed_not_dead_lettered": len(not_dead_lettered),
        "dead_letters_without_reason": len(without_reason),
        "dead_letters_with_another_reason": len(wrong_reason),
        "valid_events_dead_lettered": len(wrongly_dead_lettered),
        "injected_headers": len(injected),
        "wrong_recipient": len(misrouted),
        "services_not_ready": sum(1 for ok in ev.ready.values() if not ok),
    }
    passed = not any(problems.values())
    per_fault = {
        f.label: {
            "kind": f.kind,
            "at_s": round(f.at - ev.started, 1),
            "lasted_s": round(f.until - f.at, 1),
            "detail": f.detail,
            "duplicates": by_fault.get(f.label, 0),
            "longest_window_s": gaps.get(f.label),
        }
        for f in ev.faults
    }
    details: dict[str, Any] = {
        "passed": passed,
        "problems": problems,
        "expected_mails": len(expected),
        "received_unique": len(received),
        "received_total": sum(copies.values()),
        "duplicates": duplicates,
        "duplicates_in_smtp_window": duplicates - len(unexplained),
        "sender_ambiguous_reported": ev.ambiguous,
        "commands_emitted_total": sum(ev.emitted.values()),
        "commands_emitted_unique": len(emitted),
        "commands_repeated": sum(n - 1 for n in ev.emitted.values() if n > 1),
        "sender_dead_letters": dict(Counter(ev.sender_dlt.values())),
        "hostile_commands": len(ev.hostile),
        "hostile_refused_unsafe_header": len(refused),
        "hostile_delivered": len(ev.hostile & received),
        "malformed_sent": len(ev.malformed),
        "malformed_dead_lettered": len(ev.malformed) - len(not_dead_lettered),
        "dead_letter_reasons": dict(dlt_reasons),
        "faults": per_fault,
        "duplicate_copies": audit[:200],  # each extra copy, the one before it, and its fault
        "ready": ev.ready,
        "samples": {
            "missing_mail": [
                f"{k} {ev.expected[k]} dlt={ev.sender_dlt.get(k)}" for k in _sample(missing_mail)
            ],
            "unexpected_mail": _sample(unexpected_mail),
            "unexplained_duplicates": _sample(unexplained),
            "missing_commands": [f"{k} {ev.expected[k]}" for k in _sample(missing_commands)],
            "extra_commands": _sample(extra_commands),
            "malformed_not_dead_lettered": [
                m[:120].decode("utf-8", "replace") for m in not_dead_lettered[:10]
            ],
            "injected_headers": injected[:10],
            "wrong_recipient": misrouted[:10],
        },
    }
    crashes = sum(1 for f in ev.faults if f.kind.startswith(("kill_", "exit_")))
    line = (
        f"{'PASS' if passed else 'FAIL'}: {len(received & expected)}/{len(expected)} mails "
        f"delivered (+{len(refused)} hostile refused), {len(missing_mail)} missing, "
        f"{duplicates} duplicate(s) "
        f"({duplicates - len(unexplained)} in the SMTP window, {len(unexplained)} unexplained), "
        f"{len(unexpected_mail)} unexpected; commands {len(emitted & expected)}/{len(expected)} "
        f"(+{len(extra_commands)} extra); dead letters {len(ev.malformed) - len(not_dead_lettered)}"
        f"/{len(ev.malformed)}; {crashes} crash(es), {len(ev.faults)} fault(s); ready "
        f"{'/'.join(n for n, ok in ev.ready.items() if ok) or 'none'}"
    )
    return Verdict(passed=passed, line=line, details=details)
