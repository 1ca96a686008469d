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


@pytest.mark.parametrize(
    ("stage", "code", "message", "action"),
    [
        # A bad recipient address, in reply to RCPT TO or (one recipient per mail) after DATA.
        ("rcpt", 550, "5.1.1 <hana@example.jp>: Recipient address rejected", "bounce"),
        ("rcpt", 553, "5.1.3 Bad destination mailbox address syntax", "bounce"),
        ("rcpt", 550, "5.1.10 Null MX", "bounce"),
        ("data", 550, "5.1.1 Mailbox does not exist", "bounce"),
        ("rcpt", 550, "4.1.1 Mailbox unknown (inconsistent class: permanent)", "bounce"),
        # X.1.7 and X.1.8 are about the *sender's* address, at whatever stage they come.
        ("mail", 553, "5.1.7 Bad sender address syntax", "fail"),
        ("mail", 550, "5.1.8 Sender address rejected: Domain not found", "fail"),
        ("rcpt", 550, "5.1.8 Sender address rejected: Domain not found", "fail"),
        ("data", 553, "5.1.7 Bad sender address syntax", "fail"),
        # Anything refused at MAIL FROM or at the greeting is not about the recipient.
        ("mail", 550, "5.1.1 Mailbox unknown", "fail"),
        ("mail", 553, "5.1.3 Bad address syntax", "fail"),
        ("mail", 550, "User unknown", "fail"),
        ("connect", 554, "5.1.0 No service", "fail"),
        # 2.1.x is no failure, whatever the basic code says.
        ("rcpt", 550, "2.1.5 Recipient OK", "fail"),
    ],
)
def test_only_a_reply_about_the_recipient_suppresses_it(
    stage: str, code: int, message: str, action: str
) -> None:
    """SPEC §4: a 5.1.x about the recipient's address bounces (and suppresses); one about the
    sender's address (X.1.7, X.1.8, RFC 3463) or at the MAIL stage fails the command only."""
    verdict = classify(Reply(code=code, message=message, stage=stage))
    assert verdict.action == action
    expected_reason = "bad_address" if action == "bounce" else f"smtp_{code}"
    assert verdict.reason == expected_reason
