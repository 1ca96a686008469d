"""Test helpers: build events like an app would, replay them, and read the mails that result."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from nudge.codec import decode_event
from nudge.commands import SendCommand
from nudge.events import Event
from nudge.journeys import Decision, Engine, load_journeys
from nudge.journeys.localtime import from_ms, to_ms
from nudge.journeys.replay import Replay
from nudge.settings import SHIPPED_JOURNEYS

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SHIPPED = load_journeys(SHIPPED_JOURNEYS)
HANA: dict[str, Any] = {
    "email": "hana@example.jp",
    "name": "山田 花子",
    "marketing_consent": True,
}
_ids = itertools.count(1)


def at(text: str, tz: ZoneInfo = TOKYO) -> datetime:
    """A local wall-clock time, e.g. at("2026-11-22 10:00") in Tokyo."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def ev(
    type_: str,
    when: datetime,
    *,
    user_id: str = "u-1",
    event_id: str | None = None,
    user: Mapping[str, Any] | None = None,
    **properties: Any,
) -> Event:
    """A behaviour event, through the real decoder (so tests cannot build invalid ones)."""
    data: dict[str, Any] = {
        "event_id": event_id or f"e-{next(_ids)}",
        "type": type_,
        "user_id": user_id,
        "occurred_at": when.isoformat(),
        "properties": properties,
    }
    if user is not None:
        data["user"] = dict(user)
    return decode_event(orjson.dumps(data))


def cart_add(when: datetime, product: str = "p-1", price: int = 4800, **kw: Any) -> Event:
    return ev(
        "cart.item_added", when, product_id=product, name="Tea set", price=price, quantity=1, **kw
    )


def order(when: datetime, total: int = 4800, order_id: str = "o-1", **kw: Any) -> Event:
    items = [{"product_id": "p-1", "name": "Tea set", "price": total, "quantity": 1}]
    return ev(
        "order.completed", when, order_id=order_id, total=total, currency="JPY", items=items, **kw
    )


def signup(when: datetime, profile: Mapping[str, Any] | None = None, **kw: Any) -> Event:
    return ev("user.signed_up", when, user=HANA if profile is None else profile, **kw)


@dataclass(frozen=True, slots=True)
class Played:
    commands: list[SendCommand]
    decisions: list[Decision]

    def mails(self, journey: str | None = None) -> list[tuple[str, str, str]]:
        """(journey, step, local send time 'YYYY-MM-DD HH:MM') of each command, in order."""
        return [
            (c.journey, c.step, c.created_at.strftime("%Y-%m-%d %H:%M"))
            for c in self.commands
            if journey is None or c.journey == journey
        ]

    def steps(self, journey: str) -> list[str]:
        return [c.step for c in self.commands if c.journey == journey]

    def reasons(self, journey: str | None = None) -> list[tuple[str | None, str]]:
        return [
            (d.step, d.reason) for d in self.decisions if journey is None or d.journey == journey
        ]


def play(
    events: Iterable[Event],
    *,
    until: datetime | None = None,
    engine: Engine | None = None,
) -> Played:
    """Replay events through the engine on a virtual clock, then fire wake-ups until `until`."""
    replay = Replay(engine or Engine(SHIPPED))
    commands: list[SendCommand] = []
    decisions: list[Decision] = []
    for event in events:
        for tick in replay.apply(event):
            commands.extend(tick.outcome.commands)
            decisions.extend(tick.outcome.decisions)
    if until is not None:
        for tick in replay.advance(to_ms(until)):
            commands.extend(tick.outcome.commands)
            decisions.extend(tick.outcome.decisions)
    return Played(commands, decisions)


def local(ms: int, tz: ZoneInfo = TOKYO) -> str:
    return from_ms(ms, tz).strftime("%Y-%m-%d %H:%M")
