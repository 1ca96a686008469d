"""The summary `nudge simulate --report` writes: per journey and step, sent and not sent by
reason, per variant, conversions and revenue, and the holdout's uplift.

Uplift compares users who received a journey's mail with users held out of it: the share of each
group that converted (an order within the attribution window of a mail, or of the mail a holdout
user would have received), and the difference in percentage points.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from nudge.journeys.outcome import Decision


@dataclass(slots=True)
class _Tally:
    sent: int = 0
    deferred: int = 0
    not_sent: Counter[str] = field(default_factory=Counter)
    conversions: int = 0
    revenue: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "not_sent": dict(sorted(self.not_sent.items())),
            "deferred": self.deferred,
            "conversions": self.conversions,
            "revenue": {k: _round(v) for k, v in sorted(self.revenue.items())},
        }


@dataclass(slots=True)
class _Journey:
    total: _Tally = field(default_factory=_Tally)
    steps: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    variants: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    treated: set[str] = field(default_factory=set)
    treated_converted: set[str] = field(default_factory=set)
    held_out: set[str] = field(default_factory=set)
    held_out_converted: set[str] = field(default_factory=set)


class Report:
    """Accumulates decisions and event counts; `as_dict()` is the JSON report."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.ignored: Counter[str] = Counter()
        self.invalid: list[dict[str, Any]] = []
        self.invalid_count = 0
        self.commands: Counter[str] = Counter()
        self.journeys: dict[str, _Journey] = defaultdict(_Journey)
        self.users: set[str] = set()
        self.first_event: str | None = None
        self.last_event: str | None = None
        self.until: str | None = None

    def invalid_line(self, line: int, reason: str, message: str) -> None:
        self.invalid_count += 1
        if len(self.invalid) < 100:
            self.invalid.append({"line": line, "reason": reason, "message": message})

    def decision(self, d: Decision) -> None:
        if d.outcome == "ignored":
            self.ignored[d.reason] += 1
            return
        if d.journey is None or d.outcome == "recorded":
            return
        journey = self.journeys[d.journey]
        tallies = [journey.total, journey.steps[d.step or "?"]]
        if d.variant is not None:
            tallies.append(journey.variants[d.variant])
        if d.outcome == "conversion":
            if d.holdout:
                journey.held_out_converted.add(d.user_id)
                return
            journey.treated_converted.add(d.user_id)
            for tally in tallies:
                tally.conversions += 1
                if d.revenue is not None:
                    currency = d.currency or "?"
                    tally.revenue[currency] = tally.revenue.get(currency, 0.0) + d.revenue
            return
        for tally in tallies:
            if d.outcome == "sent":
                tally.sent += 1
            elif d.outcome == "deferred":
                tally.deferred += 1
            else:
                tally.not_sent[d.reason] += 1
        if d.outcome == "sent":
            journey.treated.add(d.user_id)
            self.commands[d.kind or "?"] += 1
        elif d.reason == "holdout":
            journey.held_out.add(d.user_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": {
                "valid": sum(self.events.values()),
                "by_type": dict(sorted(self.events.items())),
                "ignored": dict(sorted(self.ignored.items())),
                "invalid": self.invalid_count,
                "invalid_lines": self.invalid,
            },
            "users": len(self.users),
            "virtual_time": {
                "first_event": self.first_event,
                "last_event": self.last_event,
                "until": self.until,
            },
            "commands": {
                "total": sum(self.commands.values()),
                **dict(sorted(self.commands.items())),
            },
            "journeys": {name: _journey(j) for name, j in sorted(self.journeys.items())},
        }


def _journey(j: _Journey) -> dict[str, Any]:
    result = j.total.as_dict()
    result["steps"] = {name: tally.as_dict() for name, tally in sorted(j.steps.items())}
    if j.variants:
        result["variants"] = {name: t.as_dict() for name, t in sorted(j.variants.items())}
    if j.held_out:
        treated_rate = _rate(j.treated_converted & j.treated, j.treated)
        holdout_rate = _rate(j.held_out_converted, j.held_out)
        result["holdout"] = {
            "treated_users": len(j.treated),
            "treated_converted": len(j.treated_converted & j.treated),
            "treated_rate": treated_rate,
            "holdout_users": len(j.held_out),
            "holdout_converted": len(j.held_out_converted),
            "holdout_rate": holdout_rate,
            "uplift_points": _round((treated_rate - holdout_rate) * 100),
        }
    return result


def _rate(converted: set[str], users: set[str]) -> float:
    return _round(len(converted) / len(users)) if users else 0.0


def _round(value: float) -> float:
    return round(value, 6)
