"""Reading one field of a journeys file: type checks, durations, times, choices, event types.

`FieldReader` notes a `Problem` (file, line, field, message, hint) and returns a default instead
of raising, so that the loader can go on and report every problem in one run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import time
from typing import Any, Final, TypeVar

from nudge.events import KNOWN_TYPES
from nudge.journeys.config import BUILTIN_TEMPLATES
from nudge.journeys.durations import parse_duration_ms, parse_local_time
from nudge.journeys.variables import TEMPLATE_PARAMS
from nudge.journeys.yamlsource import LineDict, Problems, did_you_mean

T = TypeVar("T")


class FieldReader:
    def __init__(self, problems: Problems) -> None:
        self.p = problems
        self.templates: frozenset[str] = BUILTIN_TEMPLATES

    def keys(self, node: LineDict, allowed: set[str], where: str) -> None:
        for key in node:
            if key not in allowed:
                self.p.add(
                    node.line_of(key),
                    f"{where}.{key}",
                    "unknown field",
                    did_you_mean(str(key), allowed),
                )

    def mapping(self, node: LineDict, key: str, where: str) -> LineDict | None:
        value = node.get(key)
        if value is None:
            return None
        if not isinstance(value, LineDict):
            self.p.add(node.line_of(key), f"{where}.{key}", "must be a mapping (key: value lines)")
            return None
        return value

    def parse(
        self,
        node: LineDict,
        key: str,
        where: str,
        fn: Callable[[Any], T],
        default: T,
        hint: str = "",
    ) -> T:
        if key not in node or node[key] is None:
            return default
        try:
            return fn(node[key])
        except (ValueError, TypeError) as err:
            self.p.add(node.line_of(key), f"{where}.{key}", str(err), hint)
            return default

    def duration(
        self, node: LineDict, key: str, where: str, default: int, *, allow_negative: bool = False
    ) -> int:
        value = self.parse(
            node, key, where, parse_duration_ms, default, "a number and a unit: 90s, 60m, 24h, 3d"
        )
        if value < 0 and not allow_negative:
            self.p.add(
                node.line_of(key),
                f"{where}.{key}",
                f"must not be negative (got {node[key]})",
                "a wait counts forward from its anchor; use a positive duration like 60m",
            )
            return default
        return value

    def local_time(self, node: LineDict, key: str, where: str, default: time | None) -> time | None:
        if isinstance(node.get(key), int):
            self.p.add(
                node.line_of(key),
                f"{where}.{key}",
                "YAML read this time as a number",
                'quote times of day: at: "10:00"',
            )
            return default
        return self.parse(node, key, where, parse_local_time, default)

    def choice(
        self,
        node: LineDict,
        key: str,
        where: str,
        allowed: frozenset[str] | set[str],
        default: str | None,
    ) -> str | None:
        value = node.get(key, default)
        if value is None:
            return None
        if value not in allowed:
            self.p.add(
                node.line_of(key),
                f"{where}.{key}",
                f"{value!r} is not allowed",
                did_you_mean(str(value), allowed),
            )
            return default
        return str(value)

    def template_params(self, params: Mapping[Any, Any], template: str, where: str) -> None:
        """A built-in template reads only its own params: any other name is a typo that would
        silently send the default (`discount_percnet: 15` → 10 %). A template of the file's own
        receives its params as they are, so any name goes."""
        known = TEMPLATE_PARAMS.get(template)
        if known is None:
            return
        for name, value in params.items():
            line = params.line_of(name) if isinstance(params, LineDict) else 0
            if name not in known:
                self.p.add(
                    line,
                    f"{where}.{name}",
                    f"template {template!r} has no parameter {name!r}",
                    did_you_mean(str(name), known) if known else f"{template} takes no params",
                )
            elif name in PARAM_VALUES:
                check, hint = PARAM_VALUES[name]
                try:
                    check(value)
                except (ValueError, TypeError) as err:
                    self.p.add(line, f"{where}.{name}", str(err), hint)

    def event_type(self, node: LineDict | None, line: int, where: str, value: Any) -> str | None:
        if not isinstance(value, str) or value not in KNOWN_TYPES:
            self.p.add(
                line, where, f"unknown event type {value!r}", did_you_mean(str(value), KNOWN_TYPES)
            )
            return None
        return value


def positive_duration(value: Any) -> int:
    ms = parse_duration_ms(value)
    if ms <= 0:
        raise ValueError(f"must be longer than zero (got {value})")
    return ms


def plain(value: Any) -> Any:
    """Convert LineDicts back to plain dicts (the config is immutable data, not YAML nodes)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def non_negative_int(value: Any) -> int:
    if whole(value) < 0:
        raise ValueError(f"must not be negative (got {value})")
    return int(value)


def positive_int(value: Any) -> int:
    if whole(value) < 1:
        raise ValueError(f"must be at least 1 (got {value})")
    return int(value)


def percentage(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if not 0 < value <= 100:
        raise ValueError(f"must be more than 0 and at most 100 (got {value})")
    return float(value)


def share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{value!r} is not a share between 0 and 1")
    return float(value)


def positive_weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{value!r} is not a positive weight")
    return float(value)


# The params whose value the engine computes with, checked here so that a bad one fails
# `nudge validate` with its line rather than the send (`valid_for: soon` raised in the engine):
# name → (check, hint).
PARAM_VALUES: Final[Mapping[str, tuple[Callable[[Any], object], str]]] = {
    "valid_days": (positive_int, "the whole days a coupon is good for, e.g. valid_days: 30"),
    "valid_for": (positive_duration, "how long a discount is good for, e.g. valid_for: 48h"),
    "coupon_percent": (percentage, "the percentage off, e.g. coupon_percent: 10"),
    "discount_percent": (percentage, "the percentage off, e.g. discount_percent: 10"),
}
