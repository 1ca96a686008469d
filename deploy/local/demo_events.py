"""The demo event stream for `make run`, stamped with the current time.

Journeys are timed from `occurred_at` and marketing mail is never sent 21:00–09:00 local, so a
fixed file would show different things at different hours. Instead the demo users live in a time
zone where it is daytime right now (the choice is printed), and events are stamped "now".
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

ZONES = (
    "Asia/Tokyo",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Europe/Berlin",
    "America/Sao_Paulo",
)


def daytime_zone(now: datetime) -> str:
    """The first demo zone where it is between 10:00 and 19:00, so marketing mail may go out."""
    for zone in ZONES:
        if 10 <= now.astimezone(ZoneInfo(zone)).hour < 19:
            return zone
    return ZONES[0]


def events(now: datetime) -> list[bytes]:
    zone = daytime_zone(now)
    stamp = now.isoformat()
    run = now.strftime("%H%M%S")

    def event(
        n: int, type_: str, user: str, props: dict[str, object], profile: dict[str, object]
    ) -> bytes:
        return orjson.dumps(
            {
                "event_id": f"demo-{run}-{n}",
                "type": type_,
                "user_id": user,
                "occurred_at": (now + timedelta(milliseconds=n)).isoformat(),
                "properties": props,
                "user": profile,
            }
        )

    hana = {
        "email": "hana@example.jp",
        "name": "山田 花子",
        "locale": "ja",
        "timezone": zone,
        "marketing_consent": True,
    }
    emma = {
        "email": "emma@example.com",
        "name": "Emma Wilson",
        "locale": "en",
        "timezone": zone,
        "marketing_consent": True,
    }
    taro = {"email": "taro@example.jp", "name": "佐藤 太郎", "locale": "ja", "timezone": zone}
    items = [{"product_id": "p-9", "name": "有田焼 ティーセット", "price": 4800, "quantity": 1}]
    return [
        event(
            1,
            "order.completed",
            "u-hana",
            {"order_id": "o-1001", "total": 4800, "currency": "JPY", "items": items},
            hana,
        ),
        event(
            2,
            "order.completed",
            "u-emma",
            {
                "order_id": "o-1002",
                "total": 12000,
                "currency": "JPY",
                "items": [
                    {"product_id": "p-3", "name": "Cast-iron kettle", "price": 12000, "quantity": 1}
                ],
            },
            emma,
        ),
        event(3, "user.signed_up", "u-taro", {}, taro),
        event(
            4,
            "password_reset.requested",
            "u-taro",
            {
                "reset_url": "https://shop.example.jp/reset/abc123",
                "expires_at": (now + timedelta(hours=1)).isoformat(),
            },
            {},
        ),
        # Emma adds to her cart and leaves: a reminder follows after the (scaled) 60 minutes.
        event(
            5,
            "cart.item_added",
            "u-emma",
            {"product_id": "p-7", "name": "Matcha whisk", "price": 2200, "quantity": 1},
            {},
        ),
        # Hana adds to her cart and buys: the order cancels the reminder at once.
        event(
            6,
            "cart.item_added",
            "u-hana",
            {"product_id": "p-8", "name": "抹茶 100g", "price": 3200, "quantity": 2},
            {},
        ),
        event(
            7,
            "order.completed",
            "u-hana",
            {
                "order_id": "o-1003",
                "total": 6400,
                "currency": "JPY",
                "items": [{"product_id": "p-8", "name": "抹茶 100g", "price": 3200, "quantity": 2}],
            },
            {},
        ),
        b'{"event_id": "demo-broken", "type": "order.completed", "occurred_at": "'
        + stamp.encode()
        + b'"}',
        b"this line is not JSON",
    ]


if __name__ == "__main__":
    now = datetime.now(UTC)
    print(f"demo users live in {daytime_zone(now)} (daytime there now)", file=sys.stderr)
    sys.stdout.buffer.write(b"\n".join(events(now)) + b"\n")
