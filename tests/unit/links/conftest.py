"""Shared pieces for the link service's unit tests: a mail reference, secrets and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from nudge.links.keys import TokenKeys
from nudge.links.urls import MailRef

SECRET = b"current-secret-current-secret-32"
OLD_SECRET = b"retired-secret-retired-secret-32"
NOW = datetime(2026, 11, 22, 1, 15, tzinfo=UTC)


@dataclass
class FakeClock:
    """Wall clock and monotonic clock under the test's control."""

    wall: datetime = NOW
    mono: float = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


def mail_ref(
    *, user_id: str = "u-42", command_id: str = "cmd-1", locale: str = "ja", variant: str | None
) -> MailRef:
    return MailRef(
        user_id=user_id,
        command_id=command_id,
        journey="cart_abandonment",
        step="reminder_1",
        variant=variant,
        locale=locale,
    )


@pytest.fixture
def ref() -> MailRef:
    """A marketing mail of the cart journey, variant B, to a Japanese-speaking user."""
    return mail_ref(variant="B")


@pytest.fixture
def keys() -> TokenKeys:
    """The current secret plus one retired secret still accepted."""
    return TokenKeys(SECRET, (OLD_SECRET,))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
