"""Per-recipient-domain throttles: token buckets and session caps, so carriers never see more
than they accept.

Japanese mobile carriers (docomo, au, SoftBank) rate-limit senders per source and answer bursts
with 4xx or silent drops; a steady rate below their limit delivers more, sooner. They also cap
how many connections one sender holds to them at once: `session` bounds the SMTP transactions
carrying mail to a domain at the same time. The bucket is a pure value updated with an explicit
`now`; `DomainThrottle` is the thin async shell that sleeps and waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_NO_CAP: AbstractAsyncContextManager[Any] = nullcontext()


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. `take` reserves one token.

    A reservation may drive the balance negative; the caller then waits the returned seconds.
    Reserving first and waiting after keeps concurrent callers in FIFO order without a lock.
    """

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, *, burst: float | None = None, now: float = 0.0) -> TokenBucket:
        size = burst if burst is not None else max(1.0, rate)
        return cls(rate=rate, burst=size, tokens=size, updated=now)

    def take(self, now: float) -> float:
        """Reserve one token at `now`; return how many seconds to wait before using it."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class DomainThrottle:
    """Waits as long as the recipient's domain bucket asks; other domains are unthrottled."""

    def __init__(
        self,
        rates: Iterable[tuple[str, float]],
        *,
        sessions: Iterable[tuple[str, int]] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._buckets = {domain: TokenBucket.full(rate, now=now) for domain, rate in rates}
        self._sessions = {domain: asyncio.Semaphore(count) for domain, count in sessions}

    def bucket_for(self, address: str) -> TokenBucket | None:
        return _for_domain(self._buckets, address)

    def session(self, address: str) -> AbstractAsyncContextManager[Any]:
        """`async with throttle.session(to):` around one SMTP transaction to `to`: waits while
        its domain (or a parent domain) has its cap of transactions in progress."""
        return _for_domain(self._sessions, address) or _NO_CAP

    async def acquire(self, address: str) -> float:
        """Wait for the recipient's domain; return the seconds waited (0 when unthrottled)."""
        bucket = self.bucket_for(address)
        if bucket is None:
            return 0.0
        wait = bucket.take(self._clock())
        if wait > 0:
            await self._sleep(wait)
        return wait


def _for_domain(by_domain: dict[str, T], address: str) -> T | None:
    """The entry for the address's domain or its nearest parent (`a.docomo.ne.jp` → docomo)."""
    domain = domain_of(address)
    while domain:
        found = by_domain.get(domain)
        if found is not None:
            return found
        domain = domain.partition(".")[2]
    return None
