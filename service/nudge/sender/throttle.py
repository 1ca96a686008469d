"""Per-recipient-domain throttles: token buckets, so carriers never see more than they accept.

Japanese mobile carriers (docomo, au, SoftBank) rate-limit senders per source and answer bursts
with 4xx or silent drops; a steady rate below their limit delivers more, sooner. The bucket is a
pure value updated with an explicit `now`; `DomainThrottle` is the thin async shell that sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass


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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._buckets = {domain: TokenBucket.full(rate, now=now) for domain, rate in rates}

    def bucket_for(self, address: str) -> TokenBucket | None:
        domain = domain_of(address)
        while domain:
            bucket = self._buckets.get(domain)
            if bucket is not None:
                return bucket
            domain = domain.partition(".")[2]
        return None

    async def acquire(self, address: str) -> float:
        """Wait for the recipient's domain; return the seconds waited (0 when unthrottled)."""
        bucket = self.bucket_for(address)
        if bucket is None:
            return 0.0
        wait = bucket.take(self._clock())
        if wait > 0:
            await self._sleep(wait)
        return wait
