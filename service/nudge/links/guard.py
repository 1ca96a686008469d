"""Keeping the link service's resource use bounded under a flood (pure; time is an argument).

Four independent limits, each cheap and each with a fixed memory ceiling:

- `RateLimiter`: a token bucket per client address (rate, burst), for the link routes only. The
  table holds at most `max_clients` addresses, least recently seen evicted first, so a flood from
  many addresses cannot grow memory. Mailbox providers send one-click POSTs and fetch pixels from
  a few shared addresses, so the default is generous. Behind a reverse proxy, name it as a
  trusted proxy: the client is then the right-most `X-Forwarded-For` hop that is not a trusted
  proxy (a client cannot forge its way past that); otherwise every request would share the
  proxy's bucket. `X-Forwarded-For` from anyone else is ignored.
- an in-flight cap (`Limits.max_in_flight`, applied by the web middleware): beyond it requests are
  shed at once with 503 instead of queueing. Within it, `ClientSlots` holds one client address to
  `Limits.max_in_flight_per_client` (429 beyond), so a few addresses cannot take every slot; and a
  request body must arrive within `Limits.body_read_timeout` (408 otherwise), so a client that
  sends headers and then stalls holds its slot for seconds, not for as long as it keeps the
  connection open.
- `RecentIds`: the ids of events published in the last `ttl` seconds. A token replayed in a loop
  (or a pixel fetched by a proxy again and again) produces one Kafka record per window, so the
  load the stream processor sees is bounded by the number of distinct mails, not by the request
  rate. This is also what the opens/clicks/unsubscribes counters count.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Final

# A one-click body is 26 bytes and every body is at most 4 KiB: a client that has not sent it
# within this is stalling on purpose (or its network is too broken to finish anyway).
BODY_READ_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Flood limits; `per_client_rate=0` turns the per-address limit off."""

    per_client_rate: float = 50.0  # requests per second, refilled continuously
    per_client_burst: float = 100.0
    max_clients: int = 10_000
    max_in_flight: int = 512
    # A quarter of the slots: above what one address's rate allows even when Kafka is slow
    # (burst 100 with a 2 s publish budget), far below what it would take to shed everyone else.
    max_in_flight_per_client: int = 128  # 0 turns it off; off too when per_client_rate is 0
    body_read_timeout: float = BODY_READ_TIMEOUT  # seconds for the whole body of a POST
    recent_ids: int = 100_000
    recent_ttl: float = 3600.0
    max_body_bytes: int = 4096
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """`10.0.0.0/8`-style strings as networks; a bad one raises ValueError naming it."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as err:
            raise ValueError(f"{cidr!r} is not an address or network like 10.0.0.0/8") from err
    return tuple(networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str | None:
    """Who sent the request: the peer, or behind trusted proxies the first untrusted hop."""
    if not trusted or not forwarded_for or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _within(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_key(remote: str | None) -> str:
    """The rate-limit key of a peer: its IPv4 address, or its IPv6 /64 (one subscriber's LAN,
    whose addresses a client can rotate at will)."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimiter:
    """Per-key token buckets in a bounded LRU table."""

    def __init__(self, *, rate: float, burst: float, max_keys: int) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Take one token from `key`'s bucket at monotonic time `now`; False when it is empty."""
        if self._rate <= 0:
            return True
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)


class ClientSlots:
    """Requests in flight per client key, at most `limit` each (`limit=0`: no limit).

    Only keys with a request in flight are kept, so the table never outgrows the in-flight cap.
    """

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._busy: Counter[str] = Counter()

    def acquire(self, key: str) -> bool:
        """Take a slot for `key`; False (and nothing taken) when it already holds `limit`."""
        if self._limit > 0 and self._busy[key] >= self._limit:
            return False
        self._busy[key] += 1
        return True

    def release(self, key: str) -> None:
        """Give back a slot taken by `acquire`."""
        self._busy[key] -= 1
        if self._busy[key] <= 0:
            del self._busy[key]

    def __len__(self) -> int:
        return len(self._busy)


class RecentIds:
    """Event ids published in the last `ttl` seconds; at most `max_size`, oldest dropped."""

    def __init__(self, *, max_size: int, ttl: float) -> None:
        self._max_size = max_size
        self._ttl = ttl
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, event_id: str, now: float) -> bool:
        """True if `event_id` was remembered less than `ttl` seconds before `now`."""
        at = self._seen.get(event_id)
        return at is not None and now - at < self._ttl

    def remember(self, event_id: str, now: float) -> None:
        self._seen.pop(event_id, None)
        self._seen[event_id] = now
        while self._seen:
            oldest_id, oldest_at = next(iter(self._seen.items()))
            if len(self._seen) <= self._max_size and now - oldest_at < self._ttl:
                break
            del self._seen[oldest_id]

    def __len__(self) -> int:
        return len(self._seen)
