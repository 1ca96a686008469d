"""Reading a journey's rules: re-entry, exits, A/B variants with weights, campaign dates.

Part of the journeys-file loader (`loader.py` reads the sections; this reads the rules within a
journey), split out to keep each module about one concern.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any, cast

from nudge.journeys.config import EXIT_CONDITIONS, REENTRY_MODES, Campaign, Exit, Reentry, Variant
from nudge.journeys.fieldreader import FieldReader, plain, positive_weight
from nudge.journeys.yamlsource import LineDict, did_you_mean

SUBJECTS = frozenset({"product", "order"})


class RulesReader(FieldReader):
    def reentry(self, node: LineDict, where: str) -> Reentry:
        raw = node.get("reentry", "always")
        line = node.line_of("reentry")
        if isinstance(raw, LineDict):
            self.keys(raw, {"once_per", "for"}, f"{where}.reentry")
            per = raw.get("once_per")
            if per not in SUBJECTS:
                self.p.add(
                    line,
                    f"{where}.reentry.once_per",
                    f"{per!r} is not a subject",
                    did_you_mean(str(per), SUBJECTS),
                )
            for_ms = self.duration(raw, "for", f"{where}.reentry", 30 * 86_400_000)
            return Reentry(mode="once_per", per=str(per), for_ms=for_ms)
        if raw not in REENTRY_MODES - {"once_per"}:
            self.p.add(
                line,
                f"{where}.reentry",
                f"{raw!r} is not a re-entry rule",
                did_you_mean(str(raw), REENTRY_MODES - {"once_per"})
                + " (or {once_per: product, for: 30d})",
            )
            return Reentry()
        return Reentry(mode=cast(Any, raw))

    def exits(self, node: LineDict, where: str) -> tuple[Exit, ...]:
        raw = node.get("exit_on") or []
        line = node.line_of("exit_on")
        if not isinstance(raw, list):
            raw = [raw]
        exits: list[Exit] = []
        for index, item in enumerate(raw):
            at = f"{where}.exit_on[{index}]"
            if isinstance(item, LineDict):
                self.keys(item, {"event", "same"}, at)
                event = self.event_type(item, item.line, f"{at}.event", item.get("event"))
                same = self.choice(item, "same", at, SUBJECTS, None)
                if event:
                    exits.append(Exit(event=event, same=same))
            else:
                event = self.event_type(None, line, at, item)
                if event:
                    exits.append(Exit(event=event))
        return tuple(exits)

    def exit_when(self, node: LineDict, where: str) -> tuple[str, ...]:
        raw = node.get("exit_when") or []
        if not isinstance(raw, list):
            raw = [raw]
        for value in raw:
            if value not in EXIT_CONDITIONS:
                self.p.add(
                    node.line_of("exit_when"),
                    f"{where}.exit_when",
                    f"{value!r} is not a condition",
                    did_you_mean(str(value), EXIT_CONDITIONS),
                )
        return tuple(str(v) for v in raw if v in EXIT_CONDITIONS)

    def variants(self, node: LineDict, where: str, steps: Mapping[str, str]) -> tuple[Variant, ...]:
        """The A/B variants; `steps` maps each step's name to its template."""
        raw = node.get("variants")
        if raw is None:
            return ()
        if not isinstance(raw, list) or not raw:
            self.p.add(node.line_of("variants"), f"{where}.variants", "must be a list of variants")
            return ()
        variants: list[Variant] = []
        for index, item in enumerate(raw):
            at = f"{where}.variants[{index}]"
            if not isinstance(item, LineDict):
                self.p.add(node.line_of("variants"), at, "a variant is {name, weight}")
                continue
            self.keys(item, {"name", "weight", "templates", "params"}, at)
            weight = self.parse(item, "weight", at, positive_weight, 0.0, "a positive number")
            templates = item.get("templates") or {}
            params = item.get("params") or {}
            for step, template in dict(templates).items():
                if step not in steps:
                    self.p.add(
                        item.line_of("templates"),
                        f"{at}.templates.{step}",
                        "no such step",
                        did_you_mean(str(step), steps),
                    )
                if template not in self.templates:
                    self.p.add(
                        item.line_of("templates"),
                        f"{at}.templates.{step}",
                        f"unknown template {template!r}",
                        did_you_mean(str(template), self.templates),
                    )
            for step in dict(params):
                if step not in steps:
                    self.p.add(
                        item.line_of("params"),
                        f"{at}.params.{step}",
                        "no such step",
                        did_you_mean(str(step), steps),
                    )
                elif isinstance(params[step], dict):
                    template = dict(templates).get(step, steps[step])
                    self.template_params(params[step], str(template), f"{at}.params.{step}")
            variants.append(
                Variant(
                    name=str(item.get("name", f"v{index}")),
                    weight=weight,
                    templates=plain(templates),
                    params=plain(params),
                )
            )
        total = sum(v.weight for v in variants)
        if not (math.isclose(total, 1.0, abs_tol=1e-6) or math.isclose(total, 100.0, abs_tol=1e-6)):
            self.p.add(
                node.line_of("variants"),
                f"{where}.variants",
                f"weights sum to {total:g}",
                "make the weights sum to 1 (or to 100)",
            )
        return tuple(variants)

    def campaigns(self, node: LineDict, where: str) -> tuple[Campaign, ...]:
        raw = node.get("campaigns") or []
        campaigns: list[Campaign] = []
        for index, item in enumerate(raw if isinstance(raw, list) else []):
            at = f"{where}.campaigns[{index}]"
            if not isinstance(item, LineDict):
                self.p.add(
                    node.line_of("campaigns"), at, "a campaign is {id, title, starts_on, ends_on}"
                )
                continue
            self.keys(item, {"id", "title", "starts_on", "ends_on"}, at)
            starts, ends = item.get("starts_on"), item.get("ends_on")
            if not isinstance(starts, date) or not isinstance(ends, date):
                self.p.add(
                    item.line,
                    at,
                    "starts_on and ends_on must be dates",
                    "write them unquoted as YYYY-MM-DD",
                )
                continue
            if ends < starts:
                self.p.add(item.line_of("ends_on"), f"{at}.ends_on", "is before starts_on")
                continue
            ident = str(item.get("id", f"campaign_{index}"))
            campaigns.append(
                Campaign(
                    id=ident, title=str(item.get("title", ident)), starts_on=starts, ends_on=ends
                )
            )
        return tuple(campaigns)
