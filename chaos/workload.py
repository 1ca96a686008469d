"""The chaos event log: deterministic by seed, built so that the set of mails it must produce does
not depend on when (or how often, or in which order of restarts) the stack processes it.

What could make a run's mails depend on wall-clock time, and how the log pins it:
- quiet hours: every user lives in a fixed-offset zone (`Etc/GMT…`) where it is mid-day now;
- the frequency cap (2 marketing mails per rolling, scaled 24 h): no user can earn more than 2
  marketing mails (cart abandoners get reminder 1 and 2; others at most onboarding + thank-you);
- staleness: the grace (1 h) is not scaled, and a run lasts minutes;
- exits racing timers: no cart abandoner ever orders, and every cart has exactly one change, so
  the cart run's anchor (and idempotency key) is the same however late the events are processed;
- deletions and unsubscribes racing timers: there are none.
Calendar journeys (birthday, anniversary, seasonal, winback, post-purchase) are left out of the
journeys file the run uses (`chaos_journeys`), so nothing is due at a date outside the run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import yaml

from nudge.settings import SHIPPED_JOURNEYS

KEEP = (
    "order_confirmation",
    "shipping_notice",
    "password_reset",
    "email_verification",
    "welcome",
    "onboarding",
    "cart_abandonment",
    "first_purchase",
)
PRODUCTS = tuple((f"p-{i:03d}", f"茶器 {i}", 800 + 100 * (i % 40)) for i in range(200))
CRLF_NAME = "Mallory\r\nBcc: victim@example.net"


def chaos_journeys(path: Path) -> Path:
    """The shipped journeys, minus the calendar and very long ones; onboarding keeps `guide`."""
    config = yaml.safe_load(SHIPPED_JOURNEYS.read_text())
    config["journeys"] = {k: v for k, v in config["journeys"].items() if k in KEEP}
    config["journeys"]["onboarding"]["steps"] = config["journeys"]["onboarding"]["steps"][:1]
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about 12:00 now (quiet hours are 21:00-09:00)."""
    offset = (12 - now.hour + 12) % 24 - 12  # in -12..11
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


@dataclass
class Workload:
    """The lines to publish (in order) and what the verdict must know about them."""

    lines: list[bytes]
    malformed: list[bytes] = field(default_factory=list)  # must all reach the dead-letter topic
    hostile_users: set[str] = field(default_factory=set)  # CRLF in the name (invalid events)
    users: int = 0
    zone: str = "Etc/GMT"

    def write(self, path: Path) -> Path:
        path.write_bytes(b"".join(line + b"\n" for line in self.lines))
        return path


def generate(
    *, users: int, events: int, seed: int, start: datetime, rate: float, hostile: int = 8
) -> Workload:
    """`events` lines for `users` users, occurred_at paced at `rate` per second from `start`."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    zone = daytime_zone(start)
    n_malformed = max(1, events // 100)
    hostile_users = {f"u-{i:06d}" for i in rng.sample(range(users), min(hostile, users))}
    per_user: list[list[dict[str, object]]] = []
    for index in range(users):
        user_id = f"u-{index:06d}"
        per_user.append(_user_events(rng, user_id, zone, crlf=user_id in hostile_users))
    # Valid events whose CR/LF only the sender can catch: an order id that reaches a Subject.
    per_user += [_hostile_order(n, zone) for n in range(hostile)]
    budget = events - n_malformed - 3 * len(hostile_users) - sum(map(len, per_user))
    while budget > 0:  # pad with views (they send nothing) until the log has its size
        owner = rng.randrange(users)
        view = _view(rng, f"u-{owner:06d}")
        per_user[owner].insert(rng.randint(1, len(per_user[owner])), view)
        budget -= 1
    # Interleave users while keeping each user's order: a start and small steps per user.
    timed: list[tuple[float, int, int]] = []
    for index, sequence in enumerate(per_user):
        t = rng.random()
        for position in range(len(sequence)):
            timed.append((t, index, position))
            t += rng.random() * 0.02
    timed.sort()
    ordered = [per_user[index][position] for _, index, position in timed]
    for number, event in enumerate(ordered):
        event["event_id"] = f"e-{number:09d}"
    # A few events sent twice, right after the original (an app retrying): ignored by event_id.
    for index in sorted(rng.sample(range(len(ordered)), max(1, len(ordered) // 500)), reverse=True):
        ordered.insert(index + 1, ordered[index])
        ordered.pop()  # keep the size; the dropped tail event is a view or a harmless step
    lines = [(orjson.dumps(event), False) for event in ordered]
    malformed = [_malformed(i) for i in range(n_malformed)]
    malformed += _hostile_invalid(rng, sorted(hostile_users))
    for line in malformed:
        lines.insert(rng.randrange(len(lines) + 1), (line, True))
    # occurred_at follows the publishing pace, so event time ≈ processing time.
    stamped: list[bytes] = []
    bad: list[bytes] = []
    for position, (line, is_bad) in enumerate(lines):
        stamp = (start + timedelta(seconds=position / rate)).isoformat(timespec="milliseconds")
        stamped.append(line.replace(b"@@AT@@", stamp.encode()))
        if is_bad:
            bad.append(stamped[-1])
    return Workload(
        lines=stamped,
        malformed=bad,
        hostile_users=hostile_users,
        users=users,
        zone=zone,
    )


def _event(kind: str, user_id: str, **properties: object) -> dict[str, object]:
    return {
        "event_id": "",  # numbered in log order by `generate`
        "type": kind,
        "user_id": user_id,
        "occurred_at": "@@AT@@",
        "properties": properties,
    }


def _view(rng: random.Random, user_id: str) -> dict[str, object]:
    return _event("product.viewed", user_id, product_id=rng.choice(PRODUCTS)[0])


def _user_events(
    rng: random.Random, user_id: str, zone: str, *, crlf: bool
) -> list[dict[str, object]]:
    profile = {
        "email": f"{user_id}@example.com",
        "name": CRLF_NAME if crlf else f"利用者 {user_id[-4:]}",
        "locale": rng.choice(("ja", "ja", "en")),
        "timezone": zone,
        "marketing_consent": rng.random() < 0.6,
    }
    roll = rng.random()
    kind = (
        "signup"
        if crlf or roll < 0.2
        else "cart"
        if roll < 0.45
        else "buyer"
        if roll < 0.75
        else "account"
        if roll < 0.85
        else "browser"
    )
    first = (
        "user.signed_up"
        if kind == "signup" or (kind == "buyer" and rng.random() < 0.4)
        else ("user.logged_in")
    )
    out = [{**_event(first, user_id), "user": profile}]
    out += [_view(rng, user_id) for _ in range(rng.randint(0, 2))]
    if kind == "signup" and rng.random() < 0.5:
        url = f"https://shop.example.com/verify/{user_id}"
        out.append(_event("email_verification.requested", user_id, verify_url=url))
    elif kind == "cart":
        pid, name, price = rng.choice(PRODUCTS)
        out.append(
            _event("cart.item_added", user_id, product_id=pid, name=name, price=price, quantity=1)
        )
    elif kind == "buyer":
        pid, name, price = rng.choice(PRODUCTS)
        qty = rng.randint(1, 3)
        order = f"o-{user_id}"
        items = [{"product_id": pid, "name": name, "price": price, "quantity": qty}]
        out.append(
            _event(
                "order.completed",
                user_id,
                order_id=order,
                total=price * qty,
                currency="JPY",
                items=items,
            )
        )
        if rng.random() < 0.7:
            out.append(
                _event(
                    "order.shipped",
                    user_id,
                    order_id=order,
                    carrier="ヤマト運輸",
                    tracking_number=f"{rng.randrange(10**12):012d}",
                    tracking_url="https://track.example.jp/x",
                )
            )
    elif kind == "account":
        expires = "2099-01-01T00:00:00+00:00"
        url = f"https://shop.example.com/reset/{user_id}"
        out.append(_event("password_reset.requested", user_id, reset_url=url, expires_at=expires))
    return out


HOSTILE_ORDER_USER = "u-hostile-"


def _hostile_order(n: int, zone: str) -> list[dict[str, object]]:
    """A valid login and order whose `order_id` would add a Bcc header to the confirmation's
    Subject: the sender must refuse it (dead letter `unsafe_header`) or neutralise it."""
    user_id = f"{HOSTILE_ORDER_USER}{n}"
    profile = {"email": f"{user_id}@example.com", "timezone": zone, "marketing_consent": False}
    items = [
        {"product_id": "p-1", "name": "<script>alert(1)</script>", "price": 100, "quantity": 1}
    ]
    order = _event(
        "order.completed",
        user_id,
        order_id=f"o-{n}\r\nBcc: victim@example.net",
        total=100,
        currency="JPY",
        items=items,
    )
    return [{**_event("user.logged_in", user_id), "user": profile}, order]


def _malformed(index: int) -> bytes:
    """One invalid record of ten kinds; each carries a unique marker, so DLT copies match."""
    marker = f"bad-{index:06d}"
    user = f"u-bad-{index:06d}"
    good = {
        "event_id": marker,
        "type": "user.logged_in",
        "user_id": user,
        "occurred_at": "@@AT@@",
    }
    kind = index % 9
    if kind == 0:
        return orjson.dumps(good)[:-12]  # truncated JSON
    if kind == 1:
        return orjson.dumps({k: v for k, v in good.items() if k != "event_id"} | {"x": marker})
    if kind == 2:
        return orjson.dumps({k: v for k, v in good.items() if k != "user_id"})
    if kind == 3:
        return orjson.dumps(good | {"occurred_at": "yesterday"})
    if kind == 4:
        return orjson.dumps(good | {"occurred_at": "2026-11-22T10:00:00"})  # no offset
    if kind == 5:
        return orjson.dumps([marker, "not an object"])
    if kind == 6:
        return orjson.dumps(good | {"type": 17})
    if kind == 7:
        return orjson.dumps(good | {"properties": [1, 2, 3]})
    return b"\xff\xfe not utf-8 " + marker.encode()


def _hostile_invalid(rng: random.Random, users: list[str]) -> list[bytes]:
    """Hostile records that are not events: huge, wrong types, absurdly deep."""
    out: list[bytes] = []
    for n, user in enumerate(users):
        base = {"event_id": f"hostile-{n}", "type": "cart.item_added", "occurred_at": "@@AT@@"}
        out.append(
            orjson.dumps(
                base
                | {
                    "event_id": f"hostile-big-{n}",
                    "user_id": user,
                    "properties": {"name": "x" * (200_000 + rng.randrange(1000))},
                }
            )
        )
        out.append(orjson.dumps(base | {"event_id": f"hostile-int-{n}", "user_id": 4200 + n}))
        out.append(b'{"event_id": "hostile-deep-%d", "x": ' % n + b"[" * 5000 + b"]" * 5000 + b"}")
    return out
