"""SMTP reply classification (RFC 5321 codes, RFC 3463 enhanced codes) as a table."""

from __future__ import annotations

import pytest

from nudge.sender.classify import CONNECTION_ERROR, Reply, classify, enhanced_code

CASES = [
    # code, message, stage, action, enhanced, reason
    (250, "2.0.0 OK queued as 12", "data", "sent", "2.0.0", "accepted"),
    (250, "Ok", "data", "sent", None, "accepted"),
    (421, "4.7.0 Try again later, closing connection", "mail", "retry", "4.7.0", "smtp_421"),
    (450, "4.2.1 Mailbox busy", "rcpt", "retry", "4.2.1", "smtp_450"),
    (451, "4.3.0 Temporary local problem", "data", "retry", "4.3.0", "smtp_451"),
    (452, "Insufficient system storage", "rcpt", "retry", None, "smtp_452"),
    (CONNECTION_ERROR, "SMTPServerDisconnected", "data", "retry", None, "connection_error"),
    (CONNECTION_ERROR, "ConnectionRefusedError", "connect", "retry", None, "connection_error"),
    (
        550,
        "5.1.1 <x@example.jp>: Recipient address rejected",
        "rcpt",
        "bounce",
        "5.1.1",
        "bad_address",
    ),
    (550, "5.1.10 Null MX", "rcpt", "bounce", "5.1.10", "bad_address"),
    (553, "5.1.3 Bad destination mailbox address syntax", "rcpt", "bounce", "5.1.3", "bad_address"),
    (550, "User unknown", "rcpt", "bounce", None, "bad_address"),
    (550, "User unknown", "data", "fail", None, "smtp_550"),
    (554, "5.7.1 Message rejected as spam", "data", "fail", "5.7.1", "smtp_554"),
    (552, "5.3.4 Message too big", "data", "fail", "5.3.4", "smtp_552"),
    (550, "5.2.1 Mailbox disabled", "rcpt", "fail", "5.2.1", "smtp_550"),
    (554, "Transaction failed", "data", "fail", None, "smtp_554"),
    (354, "Start mail input", "data", "retry", None, "smtp_354"),
]


@pytest.mark.parametrize(("code", "message", "stage", "action", "enhanced", "reason"), CASES)
def test_classify(
    code: int, message: str, stage: str, action: str, enhanced: str | None, reason: str
) -> None:
    """Each reply maps to exactly one action: sent, retry, bounce (5.1.x) or fail."""
    verdict = classify(Reply(code=code, message=message, stage=stage))
    assert (verdict.action, verdict.enhanced, verdict.reason) == (action, enhanced, reason)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("5.1.1 user unknown", "5.1.1"),
        ("  4.4.2 timeout", "4.4.2"),
        ("5.1.1", "5.1.1"),
        ("OK 5.1.1 later in text", None),
        ("6.1.1 not a class", None),
        ("", None),
    ],
)
def test_enhanced_code_is_read_only_at_the_start(message: str, expected: str | None) -> None:
    """The enhanced status code is the first token of the reply text, per RFC 3463."""
    assert enhanced_code(message) == expected
