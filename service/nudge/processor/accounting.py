"""Counting what the engine decided: steps not sent (with reason), ignored events, conversions.

The engine reports every step it considered as a `Decision` (nudge.journeys.outcome) whose
`outcome` and `reason` come from closed sets; this module turns them into the Prometheus counters
of `nudge.metrics`. Sent steps are counted from the commands themselves (COMMANDS_EMITTED).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nudge import metrics


def count_decisions(decisions: Iterable[Any]) -> None:
    """Add one engine call's decisions to the counters."""
    for decision in decisions:
        outcome = decision.outcome
        if outcome == "sent" or outcome == "recorded":
            continue
        journey = decision.journey or "none"
        step = decision.step or "none"
        if outcome in ("skipped", "deferred"):
            metrics.NOT_SENT.labels(journey, step, decision.reason).inc()
        elif outcome == "ignored":
            metrics.EVENTS_IGNORED.labels(decision.reason).inc()
        elif outcome == "conversion":
            if decision.holdout or decision.reason == "holdout_conversion":
                metrics.HOLDOUT_CONVERSIONS.labels(journey, step).inc()
                continue
            variant = decision.variant or metrics.NO_VARIANT
            metrics.CONVERSIONS.labels(journey, step, variant).inc()
            if decision.revenue:
                metrics.REVENUE.labels(journey, step, variant, decision.currency or "none").inc(
                    decision.revenue
                )
