"""Flood limits: per-client token buckets and the recently-published window, with fixed memory."""

from __future__ import annotations

import pytest

from nudge.links.guard import (
    BODY_READ_TIMEOUT,
    ClientSlots,
    Limits,
    RateLimiter,
    RecentIds,
    client_address,
    client_key,
    parse_networks,
)


def test_a_client_gets_its_burst_then_is_refused() -> None:
    """With burst 3, the fourth request at the same instant is refused."""
    limiter = RateLimiter(rate=1.0, burst=3.0, max_keys=10)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_refill_at_the_rate() -> None:
    """After 2 s at 1 request/s, two more requests pass and a third does not."""
    limiter = RateLimiter(rate=1.0, burst=3.0, max_keys=10)
    for _ in range(3):
        limiter.allow("a", 0.0)
    assert [limiter.allow("a", 2.0) for _ in range(3)] == [True, True, False]


def test_clients_have_separate_buckets() -> None:
    """One noisy client does not use up another's allowance."""
    limiter = RateLimiter(rate=1.0, burst=1.0, max_keys=10)
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)


def test_rate_zero_turns_the_limit_off() -> None:
    """Behind a reverse proxy the limit is switched off with rate 0."""
    limiter = RateLimiter(rate=0.0, burst=0.0, max_keys=1)
    assert all(limiter.allow("proxy", 0.0) for _ in range(1000))


def test_the_client_table_never_exceeds_its_size() -> None:
    """A flood from many addresses evicts the least recently seen, keeping memory fixed."""
    limiter = RateLimiter(rate=1.0, burst=1.0, max_keys=100)
    for number in range(10_000):
        limiter.allow(f"10.{number}", float(number))
    assert len(limiter) == 100


def test_a_client_holds_at_most_its_share_of_slots() -> None:
    """With a limit of 2, a client's third request in flight is refused; others are unaffected."""
    slots = ClientSlots(limit=2)
    assert [slots.acquire("a") for _ in range(3)] == [True, True, False]
    assert slots.acquire("b")


def test_a_released_slot_can_be_taken_again_and_idle_clients_are_forgotten() -> None:
    """Only clients with a request in flight are kept, so the table cannot outgrow the cap."""
    slots = ClientSlots(limit=1)
    assert slots.acquire("a")
    slots.release("a")
    assert len(slots) == 0
    assert slots.acquire("a")


def test_slot_limit_zero_turns_it_off() -> None:
    """limit=0: no per-client bound (behind a proxy that is not trusted)."""
    slots = ClientSlots(limit=0)
    assert all(slots.acquire("proxy") for _ in range(1000))


def test_a_request_body_has_a_few_seconds_to_arrive() -> None:
    """The default body read timeout is a named constant of a few seconds."""
    assert 1.0 <= BODY_READ_TIMEOUT <= 10.0
    assert Limits().body_read_timeout == BODY_READ_TIMEOUT
    assert 0 < Limits().max_in_flight_per_client < Limits().max_in_flight


def test_recent_ids_are_remembered_for_the_ttl_only() -> None:
    """An id published at t=0 is a repeat at t=59 and new again at t=60 (ttl 60)."""
    recent = RecentIds(max_size=10, ttl=60.0)
    recent.remember("e-1", 0.0)
    assert recent.seen("e-1", 59.0)
    assert not recent.seen("e-1", 60.0)
    assert not recent.seen("e-2", 1.0)


def test_recent_ids_keep_at_most_max_size() -> None:
    """Beyond max_size the oldest ids are forgotten first."""
    recent = RecentIds(max_size=3, ttl=1000.0)
    for number in range(5):
        recent.remember(f"e-{number}", float(number))
    assert len(recent) == 3
    assert not recent.seen("e-0", 5.0)
    assert recent.seen("e-4", 5.0)


def test_expired_ids_are_dropped_as_new_ones_arrive() -> None:
    """Old entries do not linger until the table is full."""
    recent = RecentIds(max_size=100, ttl=10.0)
    for number in range(5):
        recent.remember(f"e-{number}", 0.0)
    recent.remember("late", 11.0)
    assert len(recent) == 1


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_clients_are_keyed_by_ipv4_address_or_ipv6_64(remote: str | None, key: str) -> None:
    """Rotating addresses inside one IPv6 /64 does not escape the per-client limit."""
    assert client_key(remote) == key


PROXIES = parse_networks(("10.0.0.0/8", "192.0.2.1"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # not a proxy: its header is ignored
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),  # the proxy names the client
        ("10.1.2.3", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # a forged first hop is skipped
        ("10.1.2.3", "198.51.100.1, 192.0.2.1", "198.51.100.1"),  # two trusted proxies
        ("10.1.2.3", None, "10.1.2.3"),
        ("10.1.2.3", "10.9.9.9", "10.9.9.9"),  # all hops trusted: the first one
    ],
)
def test_the_client_behind_trusted_proxies_is_the_first_untrusted_hop(
    peer: str, forwarded: str | None, client: str
) -> None:
    """X-Forwarded-For counts only from a trusted proxy, read from the right."""
    assert client_address(peer, forwarded, PROXIES) == client


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    """By default nobody's X-Forwarded-For is believed."""
    assert client_address("10.1.2.3", "198.51.100.1", ()) == "10.1.2.3"


def test_a_bad_proxy_network_is_named() -> None:
    """A typo in --trusted-proxy is an error naming the value."""
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/33"):
        parse_networks(("10.0.0.0/33",))
