"""The variables each template receives (the table in docs/dev/contracts.md), built at send time.

`CAPTURE` names the trigger properties a run keeps for its template, so that state holds only
what a mail will need; a template the table does not know keeps all its trigger's properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import orjson

from nudge.journeys.config import Campaign
from nudge.journeys.draft import Draft
from nudge.journeys.ids import code
from nudge.journeys.state import MAX_NAME_LENGTH, MAX_TEXT_LENGTH, Run, UserState

MAX_ITEMS: Final = 20
# What a run keeps of its trigger for a template the table does not know (all properties): the
# properties, in the event's order, whose encoded size fits in this budget together.
MAX_CAPTURED_BYTES: Final = 4096
_ORDER = ("order_id", "total", "currency", "items")
CAPTURE: Final[Mapping[str, tuple[str, ...]]] = {
    "order_confirmation": _ORDER,
    "shipping_notice": ("order_id", "carrier", "tracking_number", "tracking_url"),
    "password_reset": ("reset_url", "expires_at"),
    "email_verification": ("verify_url",),
    "welcome": (),
    "onboarding_guide": (),
    "onboarding_tips": (),
    "cart_reminder_1": (),
    "cart_reminder_2": (),
    "browse_offer": ("product_id", "name"),
    "first_purchase_thank_you": ("order_id", "total", "currency"),
    "review_request": ("order_id", "items"),
    "cross_sell": ("order_id", "items"),
    "winback_1": (),
    "winback_2": (),
    "birthday": (),
    "anniversary": (),
    "seasonal_pre_sale": (),
    "seasonal_launch": (),
    "seasonal_last_call": (),
}
_ITEM_FIELDS = ("product_id", "name", "quantity", "price")
# The `params` each built-in template reads in `build` (the loader refuses any other name: a typo
# would silently send the default); a template not in CAPTURE is the file's own and gets them all.
TEMPLATE_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    **{template: frozenset() for template in CAPTURE},
    "cart_reminder_2": frozenset({"discount_percent", "code_prefix", "valid_for"}),
    "first_purchase_thank_you": frozenset(
        {"coupon_percent", "coupon_tiers", "code_prefix", "valid_days"}
    ),
    "winback_1": frozenset({"discount_percent", "code_prefix", "valid_days"}),
}
# How long a code is good for when its step's params do not say (docs/journeys.md): a coupon
# whole local days, a cart discount a relative window that NUDGE_DELAY_SCALE shortens.
COUPON_VALID_DAYS: Final = 30
DISCOUNT_VALID_FOR: Final = "48h"
_LAST_SECOND: Final = time(23, 59, 59)


# Not a frozen dataclass: a short-lived bundle of arguments built once per mail, and a frozen
# dataclass's `__init__` (object.__setattr__ per field) costs three times as much; a plain
# `__init__` is also what mypyc compiles to native stores (a dataclass's generated one is not).
class SendContext:
    """What a template's variables may draw on when a step is sent."""

    __slots__ = (
        "campaign",
        "currency",
        "delay_scale",
        "key",
        "now",
        "params",
        "run",
        "state",
        "template",
    )

    def __init__(
        self,
        *,
        state: UserState | Draft,
        run: Run,
        template: str,
        params: Mapping[str, Any],
        key: str,
        now: datetime,
        currency: str,
        delay_scale: float,
        campaign: Campaign | None = None,
    ) -> None:
        self.state = state
        self.run = run
        self.template = template
        self.params = params
        self.key = key
        self.now = now
        self.currency = currency
        self.delay_scale = delay_scale
        self.campaign = campaign


def capture_names(templates: tuple[str, ...]) -> tuple[str, ...] | None:
    """The trigger properties a journey's templates need; None: keep them all (unknown template)."""
    names: set[str] = set()
    for template in templates:
        wanted = CAPTURE.get(template)
        if wanted is None:
            return None
        names.update(wanted)
    return tuple(sorted(names))


def capture(names: tuple[str, ...] | None, properties: Mapping[str, Any]) -> dict[str, Any] | None:
    """The named trigger properties (all when `names` is None), each bounded: text cut at
    `MAX_TEXT_LENGTH` characters (names at `MAX_NAME_LENGTH`), `items` trimmed to MAX_ITEMS
    items of four plain fields, any other list or object dropped; for an unknown template all
    properties, text cut the same, within `MAX_CAPTURED_BYTES`."""
    if names is None:
        return _within_budget(properties) or None
    if not names:
        return None
    data: dict[str, Any] = {}
    for name in names:
        if name not in properties:
            continue
        value = properties[name]
        if name == "items" and isinstance(value, list):
            data[name] = [_item(i) for i in value[:MAX_ITEMS] if isinstance(i, Mapping)]
        else:
            data[name] = _scalar(value, MAX_NAME_LENGTH if name == "name" else MAX_TEXT_LENGTH)
    return data or None


def _within_budget(properties: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    used = 2  # {}
    for name, value in properties.items():
        if isinstance(value, str):
            value = value[:MAX_TEXT_LENGTH]
        try:
            size = len(orjson.dumps({name: value})) - 1  # without one brace: a comma instead
        except orjson.JSONEncodeError:
            continue  # nested deeper than anything can store (orjson's 254 levels)
        if used + size <= MAX_CAPTURED_BYTES:
            kept[name] = value
            used += size
    return kept


def _scalar(value: Any, limit: int) -> Any:
    """A string cut at `limit` characters, a number, true, false or null as it is; anything else
    (a list or object where a template expects a plain value) as null."""
    if isinstance(value, str):
        return value[:limit]
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def build(ctx: SendContext) -> dict[str, Any]:
    """The template's variables, always including `name` (None when unknown)."""
    data = dict(ctx.run.data or {})
    variables: dict[str, Any] = {"name": ctx.state.name}
    template = ctx.template
    if template in ("cart_reminder_1", "cart_reminder_2"):
        cart = ctx.state.cart
        variables["items"] = [
            {"product_id": p, "name": n, "price": price, "quantity": q} for p, n, price, q in cart
        ]
        variables["cart_total"] = _number(sum(price * q for _, _, price, q in cart))
        variables["currency"] = ctx.currency
        if template == "cart_reminder_2":
            _discount(variables, ctx)
    elif template == "browse_offer":
        variables["product_id"] = data.get("product_id", ctx.run.key)
        variables["product_name"] = data.get("name")
    elif template == "first_purchase_thank_you":
        variables["order_id"] = data.get("order_id")
        percent = _coupon_percent(ctx.params, data.get("total"))
        variables["coupon_percent"] = percent
        variables["coupon_code"] = code(str(ctx.params.get("code_prefix", "THANKS")), ctx.key)
        variables["coupon_expires_at"] = coupon_expires_at(ctx.now, _valid_days(ctx.params))
    elif template == "winback_1":
        variables["discount_percent"] = ctx.params.get("discount_percent", 10)
        variables["coupon_code"] = code(str(ctx.params.get("code_prefix", "COMEBACK")), ctx.key)
        variables["coupon_expires_at"] = coupon_expires_at(ctx.now, _valid_days(ctx.params))
    elif template == "anniversary":
        variables["years"] = _years(ctx)
    elif ctx.campaign is not None:
        variables["campaign"] = ctx.campaign.id
        variables["campaign_title"] = ctx.campaign.title
        variables["starts_on"] = ctx.campaign.starts_on.isoformat()
        variables["ends_on"] = ctx.campaign.ends_on.isoformat()
    else:
        wanted = CAPTURE.get(template)
        for name in wanted if wanted is not None else tuple(data):
            variables[name] = data.get(name)
    for name, value in ctx.params.items():
        # Declared params of custom templates reach the template too (never overriding).
        if template not in CAPTURE:
            variables.setdefault(name, value)
    return variables


def _discount(variables: dict[str, Any], ctx: SendContext) -> None:
    from nudge.journeys.durations import parse_duration_ms

    variables["discount_percent"] = ctx.params.get("discount_percent", 10)
    variables["discount_code"] = code(str(ctx.params.get("code_prefix", "CART")), ctx.key)
    valid_ms = parse_duration_ms(str(ctx.params.get("valid_for", DISCOUNT_VALID_FOR)))
    # 48 h are 48 elapsed hours, as every relative wait is: added in UTC, then shown in the
    # user's zone (adding to the local time would make them 47 or 49 across a DST change).
    window = timedelta(milliseconds=round(valid_ms * ctx.delay_scale))
    expires = (ctx.now.astimezone(UTC) + window).astimezone(ctx.now.tzinfo)
    variables["discount_expires_at"] = expires.isoformat()


def coupon_expires_at(now: datetime, valid_days: int) -> str:
    """The last second (23:59:59) of the local day `valid_days` after `now`'s, in `now`'s zone,
    as ISO 8601 with that moment's offset: a coupon sent on 22 Nov with 30 days is good until
    22 Dec 23:59, whatever the hour it was sent and across a DST change."""
    day = now.date() + timedelta(days=valid_days)
    return datetime.combine(day, _LAST_SECOND, tzinfo=now.tzinfo).isoformat()


def _valid_days(params: Mapping[str, Any]) -> int:
    # The loader accepts only a whole number of at least 1 (fieldreader.PARAM_VALUES).
    return int(params.get("valid_days", COUPON_VALID_DAYS))


def _coupon_percent(params: Mapping[str, Any], total: Any) -> Any:
    percent = params.get("coupon_percent", 10)
    if isinstance(total, int | float):
        for tier in params.get("coupon_tiers") or ():
            if isinstance(tier, Mapping) and total < tier.get("below", 0):
                return tier.get("percent", percent)
    return percent


def _years(ctx: SendContext) -> int | None:
    # The run's key is "<signup date>|<zone>"; the occurrence is the due date.
    try:
        signed = date.fromisoformat(ctx.run.key.split("|", 1)[0])
    except ValueError:
        return None
    return ctx.now.year - signed.year


def _item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: _scalar(item[k], MAX_NAME_LENGTH if k == "name" else MAX_TEXT_LENGTH)
        for k in _ITEM_FIELDS
        if k in item
    }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
