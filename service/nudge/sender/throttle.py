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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from nudge.metrics import THROTTLE_WAIT

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
        self._sessions = {domain: _Sessions(domain, count, clock) for domain, count in sessions}

    def bucket_for(self, address: str) -> TokenBucket | None:
        domain = _configured(self._buckets, address)
        return None if domain is None else self._buckets[domain]

    def session(self, address: str) -> AbstractAsyncContextManager[Any]:
        """`async with throttle.session(to):` around one SMTP transaction to `to`: waits while
        its domain (or a parent domain) has its cap of transactions in progress."""
        domain = _configured(self._sessions, address)
        return _NO_CAP if domain is None else self._sessions[domain]

    async def acquire(self, address: str) -> float:
        """Wait for the recipient's domain; return the seconds waited (0 when unthrottled)."""
        domain = _configured(self._buckets, address)
        if domain is None:
            return 0.0
        wait = self._buckets[domain].take(self._clock())
        if wait > 0:
            THROTTLE_WAIT.labels(domain, "rate").inc(wait)
            await self._sleep(wait)
        return wait


def _configured(by_domain: Mapping[str, object], address: str) -> str | None:
    """The configured domain the address belongs to: its own or its nearest parent's
    (`a@mail.docomo.ne.jp` → `docomo.ne.jp`)."""
    domain = domain_of(address)
    while domain:
        if domain in by_domain:
            return domain
        domain = domain.partition(".")[2]
    return None


class _Sessions:
    """At most `count` SMTP transactions to one domain at once; time spent waiting is counted."""

    __slots__ = ("_clock", "_domain", "_semaphore")

    def __init__(self, domain: str, count: int, clock: Callable[[], float]) -> None:
        self._domain = domain
        self._semaphore = asyncio.Semaphore(count)
        self._clock = clock

    async def __aenter__(self) -> None:
        if not self._semaphore.locked():
            await self._semaphore.acquire()
            return
        began = self._clock()
        await self._semaphore.acquire()
        THROTTLE_WAIT.labels(self._domain, "sessions").inc(self._clock() - began)

    async def __aexit__(self, *exc_info: object) -> None:
        self._semaphore.release()
