"""`nudge generate-events`: a realistic synthetic event log, deterministic by seed, time-sorted.

Users sign up or are already known, browse a catalogue with popular products, fill and abandon
carts, buy (and get their orders shipped), go quiet, have birthdays, open and click mail; a few
unsubscribe or ask to be deleted, and a few events are sent twice (apps retry). Each user has its
own random stream seeded from (seed, user), so the log does not depend on the order of work.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import orjson

from nudge.commandline import USAGE, error, number, reason
from nudge.settings import Settings

START = datetime(2026, 11, 1, tzinfo=UTC)
ZONES = (
    ("Asia/Tokyo", 0.82),
    ("America/New_York", 0.05),
    ("Europe/Berlin", 0.04),
    ("America/Los_Angeles", 0.03),
    ("Europe/London", 0.03),
    ("Asia/Singapore", 0.03),
)
FAMILY = ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤")
GIVEN = ("花子", "太郎", "陽菜", "蓮", "結衣", "湊", "美咲", "大翔", "さくら", "健")
PRODUCTS = tuple(
    (f"p-{i:04d}", f"{kind} {i}", price)
    for i, (kind, price) in enumerate(
        (k, p)
        for k, p in (
            ("湯呑み", 1800),
            ("急須", 5400),
            ("煎茶", 1200),
            ("抹茶セット", 9800),
            ("箸置き", 900),
            ("風呂敷", 3200),
            ("Tea set", 4800),
            ("手ぬぐい", 1100),
        )
        for _ in range(25)
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    users: int = 1000
    days: int = 60
    seed: int = 1
    events_per_user: float = 12.0
    start: datetime = START


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users", type=number(int, at_least=1), default=1000, help="number of users"
    )
    parser.add_argument(
        "--days", type=number(int, at_least=1), default=60, help="length of the log in days"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed: same seed, same log")
    parser.add_argument(
        "--events-per-user",
        type=number(float, above=0.0),
        default=12.0,
        help="mean events per user",
    )
    parser.add_argument(
        "--start", type=_day, default=START.date().isoformat(), help="first day, YYYY-MM-DD (UTC)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output JSONL (default: stdout)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day YYYY-MM-DD ({err})") from None


def main(args: argparse.Namespace, settings: Settings) -> int:
    del settings  # the log does not depend on the deployment
    start = datetime.combine(args.start, datetime.min.time(), tzinfo=UTC)
    plan = Plan(
        users=args.users,
        days=args.days,
        seed=args.seed,
        events_per_user=args.events_per_user,
        start=start,
    )
    try:
        # Opened before generating: a bad --out is refused at once, not after the work.
        with _output(args.out) as stream:
            count = _write(stream, generate(plan))
    except BrokenPipeError:
        raise  # stdout's reader stopped reading (`| head`): `nudge` ends quietly
    except OSError as err:
        where = f"--out {args.out}" if args.out is not None else "to stdout"
        error("generate-events", f"cannot write {where}: {reason(err, args.out)}")
        return USAGE
    where = args.out or "stdout"
    print(
        f"nudge generate-events: wrote {count} events for {args.users} users to {where}",
        file=sys.stderr,
    )
    return 0


def _output(path: Path | None) -> contextlib.AbstractContextManager[BinaryIO]:
    """The file at `path` (its folder created), or stdout, which is left open."""
    if path is None:
        return contextlib.nullcontext(sys.stdout.buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("wb")


def _write(out: Any, lines: list[bytes]) -> int:
    for line in lines:
        out.write(line)
        out.write(b"\n")
    return len(lines)


def generate(plan: Plan) -> list[bytes]:
    """Every user's events, merged and sorted by time (ties: user, then sequence)."""
    rows: list[tuple[int, int, int, bytes]] = []
    for index in range(plan.users):
        for seq, (when, line) in enumerate(_user(plan, index)):
            rows.append((when, index, seq, line))
    rows.sort()
    return [row[3] for row in rows]


class _User:
    """One synthetic user's profile and random stream."""

    def __init__(self, plan: Plan, index: int) -> None:
        self.rng = random.Random(f"{plan.seed}:{index}")
        rng = self.rng
        self.id = f"u-{index:07d}"
        self.zone = rng.choices([z for z, _ in ZONES], [w for _, w in ZONES])[0]
        self.tz = ZoneInfo(self.zone)
        born = date(1960, 1, 1) + timedelta(days=rng.randrange(45 * 365))
        if rng.random() < 0.002:
            born = date(1992, 2, 29)
        self.profile: dict[str, Any] = {
            "email": f"user{index}@example.jp",
            "name": rng.choice(FAMILY) + " " + rng.choice(GIVEN),
            "locale": "ja" if self.zone == "Asia/Tokyo" and rng.random() < 0.95 else "en",
            "timezone": self.zone,
            "birthday": born.isoformat(),
            "marketing_consent": rng.random() < 0.7,
        }
        if rng.random() < 0.1:
            del self.profile["birthday"]
        self.counter = 0
        self.orders = 0

    def event(self, when: datetime, type_: str, **props: Any) -> tuple[int, bytes]:
        self.counter += 1
        data: dict[str, Any] = {
            "event_id": f"{self.id}-{self.counter:05d}",
            "type": type_,
            "user_id": self.id,
            "occurred_at": when.astimezone(self.tz).isoformat(timespec="seconds"),
        }
        if props.pop("with_profile", False):
            data["user"] = self.profile
        if props:
            data["properties"] = props
        ms = int(when.timestamp() * 1000)
        return ms, orjson.dumps(data)


def _user(plan: Plan, index: int) -> Iterator[tuple[int, bytes]]:
    user = _User(plan, index)
    rng = user.rng
    span = timedelta(days=plan.days)
    first = plan.start + timedelta(seconds=rng.randrange(int(span.total_seconds() * 0.8)))
    new_user = rng.random() < 0.4
    # Sessions per day: a few heavy users, many light ones; some go quiet for good.
    rate = rng.expovariate(1.0) * plan.events_per_user / plan.days / 2.68  # ~events_per_user
    quiet_after = first + span * rng.random() if rng.random() < 0.3 else plan.start + span * 2
    end = min(plan.start + span, quiet_after)
    emitted: list[tuple[int, bytes]] = []
    if new_user:
        emitted.append(user.event(first, "user.signed_up", with_profile=True))
        if rng.random() < 0.5:
            emitted.append(
                user.event(
                    first + timedelta(seconds=5),
                    "email_verification.requested",
                    verify_url=f"https://shop.example/verify/{user.id}",
                )
            )
    else:
        emitted.append(user.event(first, "user.logged_in", with_profile=True))
    when = first
    while True:
        when += timedelta(days=rng.expovariate(max(rate, 1e-3)))
        when = _daytime(rng, when, user.tz)
        if when >= end:
            break
        emitted.extend(_session(user, when))
        roll = rng.random()
        if roll < 0.004:
            emitted.append(
                user.event(
                    when + timedelta(minutes=2),
                    "password_reset.requested",
                    reset_url=f"https://shop.example/reset/{user.id}",
                    expires_at=(when + timedelta(hours=1)).isoformat(),
                )
            )
        elif roll < 0.012:
            scope = "all" if rng.random() < 0.2 else "marketing"
            emitted.append(
                user.event(when + timedelta(minutes=3), "user.unsubscribed", scope=scope)
            )
        elif roll < 0.014:
            emitted.append(user.event(when + timedelta(minutes=4), "user.deleted"))
            break
    emitted = [e for e in emitted if e[0] < int((plan.start + span).timestamp() * 1000)]
    # Apps retry: a few events arrive twice (same event_id and time), right after the first.
    doubled = [(ms, line) for ms, line in emitted if rng.random() < 0.003]
    yield from sorted(emitted + doubled, key=lambda e: e[0])


def _daytime(rng: random.Random, when: datetime, tz: ZoneInfo) -> datetime:
    """Most sessions happen in the local day and evening; a few late at night."""
    local = when.astimezone(tz)
    hour = rng.choices(
        range(24), weights=[1, 1, 1, 1, 1, 1, 2, 4, 6, 6, 6, 7, 8, 7, 6, 6, 6, 7, 8, 9, 9, 8, 5, 2]
    )[0]
    moved = local.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60))
    return moved.astimezone(UTC) if moved > local else when


def _session(user: _User, when: datetime) -> Iterator[tuple[int, bytes]]:
    rng = user.rng
    t = when
    if rng.random() < 0.5:
        yield user.event(t, "user.logged_in")
    favourite = PRODUCTS[min(int(rng.paretovariate(1.2)) - 1, len(PRODUCTS) - 1)]
    cart: list[tuple[str, str, int]] = []
    for _ in range(rng.choice((1, 1, 2, 3, 3, 4, 6))):
        t += timedelta(seconds=rng.randrange(20, 240))
        product = favourite if rng.random() < 0.6 else rng.choice(PRODUCTS)
        yield user.event(t, "product.viewed", product_id=product[0])
        if rng.random() < 0.12:
            t += timedelta(seconds=rng.randrange(10, 60))
            cart.append(product)
            yield user.event(
                t,
                "cart.item_added",
                product_id=product[0],
                name=product[1],
                price=product[2],
                quantity=rng.choice((1, 1, 1, 2)),
            )
    if cart and rng.random() < 0.1:
        t += timedelta(seconds=30)
        removed = cart.pop()
        yield user.event(t, "cart.item_removed", product_id=removed[0])
    if cart and rng.random() < 0.45:
        t += timedelta(minutes=rng.randrange(1, 10))
        yield user.event(t, "checkout.started")
        t += timedelta(minutes=rng.randrange(1, 5))
        user.orders += 1
        order_id = f"o-{user.id[2:]}-{user.orders}"
        items = [
            {"product_id": p, "name": n, "price": price, "quantity": 1} for p, n, price in cart
        ]
        total = sum(price for _, _, price in cart)
        yield user.event(
            t, "order.completed", order_id=order_id, total=total, currency="JPY", items=items
        )
        shipped = t + timedelta(hours=rng.randrange(12, 60))
        yield user.event(
            shipped,
            "order.shipped",
            order_id=order_id,
            carrier="Yamato",
            tracking_number=f"{rng.randrange(10**11, 10**12)}",
            tracking_url=f"https://track.example/{order_id}",
        )
    if rng.random() < 0.1:
        t += timedelta(hours=rng.randrange(1, 30))
        yield user.event(t, "email.opened")
    if rng.random() < 0.002:
        yield user.event(t + timedelta(seconds=1), "app.opened")  # an event type Nudge ignores
