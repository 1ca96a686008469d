"""Loading and checking a journeys file: `load_journeys(path)` or `parse_journeys(text, file)`.

Every problem is reported with file, line, field and a hint (`JourneysFileError`, a
`ConfigError`); the loader keeps going after a problem so that `nudge validate` lists them all.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge.journeys.config import (
    BUILTIN_TEMPLATES,
    CALENDARS,
    CONDITIONS,
    Journey,
    JourneysConfig,
    Policies,
    Step,
    Trigger,
    Wait,
)
from nudge.journeys.fieldreader import (
    boolean,
    non_negative_int,
    plain,
    positive_int,
    share,
    whole,
)
from nudge.journeys.rulesreader import RulesReader
from nudge.journeys.yamlsource import (
    UNREADABLE,
    JourneysFileError,
    LineDict,
    Problem,
    Problems,
    did_you_mean,
    load_yaml,
    report_repeated_keys,
)

_TOP = {"version", "defaults", "policies", "templates", "journeys"}
_JOURNEY = {
    "kind",
    "enabled",
    "trigger",
    "reentry",
    "exit_on",
    "exit_when",
    "grace",
    "holdout",
    "variants",
    "campaigns",
    "steps",
    "description",
}
_TRIGGER = {"event", "when", "views", "within", "calendar", "years", "active_within"}
_STEP = {"name", "template", "kind", "wait", "params", "description"}
_WAIT = {"delay", "after", "at", "date", "from", "days"}


def load_journeys(path: str | Path, *, named_by: str = "NUDGE_JOURNEYS") -> JourneysConfig:
    """Read and check a journeys file; `JourneysFileError` (a ConfigError) lists what is wrong.

    `named_by` is where the path came from (`NUDGE_JOURNEYS`, or a command-line argument such as
    `--journeys`), for the hint when the file cannot be read.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        if named_by == "NUDGE_JOURNEYS":
            hint = "set NUDGE_JOURNEYS to an existing file, or omit it for the shipped one"
        else:
            hint = f"check {named_by}; without it, NUDGE_JOURNEYS (or the shipped file) is used"
        raise JourneysFileError(
            [
                Problem(
                    file=file,
                    line=0,
                    field=UNREADABLE,
                    message=f"cannot read: {err.strerror}",
                    hint=hint,
                )
            ]
        ) from err
    return parse_journeys(text, file)


def parse_journeys(text: str, file: str = "<journeys>") -> JourneysConfig:
    data = load_yaml(text, file)
    problems = Problems(file)
    report_repeated_keys(data, problems)
    if not isinstance(data, LineDict):
        problems.add(1, "(top)", "a journeys file is a mapping with a 'journeys' key")
        problems.raise_if_any()
    reader = _Reader(problems)
    config = reader.config(cast(LineDict, data))
    problems.raise_if_any()
    return config


class _Reader(RulesReader):
    """Reads the sections of a journeys file into the model, noting every problem."""

    # -- sections --------------------------------------------------------------------------
    def config(self, data: LineDict) -> JourneysConfig:
        self.keys(data, _TOP, "(top)")
        version = data.get("version", 1)
        if version != 1:
            self.p.add(
                data.line_of("version"),
                "version",
                f"unsupported version {version!r}",
                "this Nudge reads version: 1",
            )
        extra = data.get("templates") or []
        if not isinstance(extra, list) or not all(isinstance(t, str) for t in extra):
            self.p.add(data.line_of("templates"), "templates", "must be a list of template names")
            extra = []
        self.templates = BUILTIN_TEMPLATES | frozenset(extra)
        defaults = self.mapping(data, "defaults", "(top)") or LineDict()
        self.keys(defaults, {"locale", "timezone", "currency", "grace"}, "defaults")
        timezone = str(defaults.get("timezone", "Asia/Tokyo"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.p.add(
                defaults.line_of("timezone"),
                "defaults.timezone",
                f"{timezone!r} is not an IANA time zone",
                "e.g. Asia/Tokyo",
            )
            timezone = "Asia/Tokyo"
        self.default_grace = self.duration(defaults, "grace", "defaults", 3_600_000)
        policies = self.policies(self.mapping(data, "policies", "(top)") or LineDict())
        journeys_node = data.get("journeys")
        journeys: list[Journey] = []
        if not isinstance(journeys_node, LineDict) or not journeys_node:
            self.p.add(
                data.line_of("journeys"),
                "journeys",
                "missing or empty",
                "declare at least one journey under 'journeys:'",
            )
        else:
            for name, node in journeys_node.items():
                where = f"journeys.{name}"
                if not isinstance(node, LineDict):
                    self.p.add(journeys_node.line_of(name), where, "must be a mapping")
                    continue
                journey = self.journey(str(name), node, where)
                if journey is not None:
                    journeys.append(journey)
        return JourneysConfig(
            journeys=tuple(journeys),
            policies=policies,
            default_locale=str(defaults.get("locale", "ja")),
            default_timezone=timezone,
            currency=str(defaults.get("currency", "JPY")),
            templates=self.templates,
            source=self.p.file,
        )

    def policies(self, node: LineDict) -> Policies:
        self.keys(
            node,
            {"quiet_hours", "frequency_cap", "attribution_window", "remember_events"},
            "policies",
        )
        quiet = self.mapping(node, "quiet_hours", "policies") or LineDict()
        self.keys(quiet, {"start", "end"}, "policies.quiet_hours")
        cap = self.mapping(node, "frequency_cap", "policies") or LineDict()
        self.keys(cap, {"max", "per"}, "policies.frequency_cap")
        cap_max = self.parse(cap, "max", "policies.frequency_cap", non_negative_int, 2)
        remember = self.parse(node, "remember_events", "policies", non_negative_int, 16)
        return Policies(
            quiet_start=self.local_time(quiet, "start", "policies.quiet_hours", time(21))
            or time(21),
            quiet_end=self.local_time(quiet, "end", "policies.quiet_hours", time(9)) or time(9),
            cap_max=cap_max,
            cap_window_ms=self.duration(cap, "per", "policies.frequency_cap", 86_400_000),
            attribution_window_ms=self.duration(
                node, "attribution_window", "policies", 7 * 86_400_000
            ),
            remember_events=max(1, min(remember, 64)),
        )

    def journey(self, name: str, node: LineDict, where: str) -> Journey | None:
        self.keys(node, _JOURNEY, where)
        kind = self.choice(node, "kind", where, {"transactional", "marketing"}, "marketing")
        trigger_node = self.mapping(node, "trigger", where)
        if trigger_node is None:
            self.p.add(
                node.line, f"{where}.trigger", "missing", "e.g. trigger: {event: order.completed}"
            )
            trigger = Trigger()
        else:
            trigger = self.trigger(trigger_node, f"{where}.trigger")
        steps = self.steps(node, where, kind or "marketing")
        campaigns = self.campaigns(node, where)
        if trigger.calendar == "campaigns" and not campaigns:
            self.p.add(
                node.line,
                f"{where}.campaigns",
                "a campaigns journey needs campaigns",
                "campaigns: [{id: winter, title: ..., starts_on: 2026-12-26, ends_on: ...}]",
            )
        holdout = self.parse(
            node, "holdout", where, share, 0.0, "a share between 0 and 1, e.g. 0.05 for 5 %"
        )
        return Journey(
            name=name,
            kind=cast(Any, kind or "marketing"),
            trigger=trigger,
            steps=steps,
            reentry=self.reentry(node, where),
            exits=self.exits(node, where),
            exit_when=self.exit_when(node, where),
            variants=self.variants(node, where, {s.name: s.template for s in steps}),
            holdout=holdout,
            grace_ms=self.duration(node, "grace", where, self.default_grace),
            campaigns=campaigns,
            enabled=self.parse(node, "enabled", where, boolean, True, "enabled: true or false"),
            line=node.line,
        )

    def trigger(self, node: LineDict, where: str) -> Trigger:
        self.keys(node, _TRIGGER, where)
        raw = node.get("event")
        events: list[str] = []
        for value in raw if isinstance(raw, list) else ([raw] if raw is not None else []):
            checked = self.event_type(node, node.line_of("event"), f"{where}.event", value)
            if checked is not None:
                events.append(checked)
        calendar = self.choice(node, "calendar", where, CALENDARS, None)
        if (raw is None) == (node.get("calendar") is None):
            self.p.add(
                node.line,
                where,
                "needs exactly one of 'event' or 'calendar'",
                "trigger: {event: user.signed_up} or trigger: {calendar: birthday}",
            )
        return Trigger(
            events=tuple(events),
            when=cast(Any, self.choice(node, "when", where, CONDITIONS, None)),
            views=self.parse(node, "views", where, positive_int, 3),
            within_ms=self.duration(node, "within", where, 86_400_000),
            calendar=cast(Any, calendar),
            years=self.parse(node, "years", where, positive_int, 1),
            active_within_ms=self.duration(node, "active_within", where, 90 * 86_400_000),
        )

    def steps(self, node: LineDict, where: str, kind: str) -> tuple[Step, ...]:
        raw = node.get("steps")
        if not isinstance(raw, list) or not raw:
            self.p.add(
                node.line_of("steps"),
                f"{where}.steps",
                "missing or empty",
                "steps: [{name: welcome, template: welcome}]",
            )
            return ()
        steps: list[Step] = []
        names: set[str] = set()
        for index, item in enumerate(raw):
            at = f"{where}.steps[{index}]"
            if not isinstance(item, LineDict):
                self.p.add(node.line_of("steps"), at, "a step is a mapping with name and template")
                continue
            self.keys(item, _STEP, at)
            name = item.get("name")
            template = item.get("template")
            if not isinstance(name, str) or not name:
                self.p.add(item.line, f"{at}.name", "missing", "every step has a name")
                name = f"step_{index}"
            if name in names:
                self.p.add(
                    item.line_of("name"),
                    f"{at}.name",
                    f"step {name!r} appears twice",
                    "step names are unique within a journey",
                )
            names.add(name)
            if not isinstance(template, str) or template not in self.templates:
                self.p.add(
                    item.line_of("template"),
                    f"{at}.template",
                    f"unknown template {template!r}",
                    did_you_mean(str(template), self.templates)
                    + " (or declare it under 'templates:')",
                )
                template = str(template)
            step_kind = self.choice(item, "kind", at, {"transactional", "marketing"}, kind) or kind
            wait_node = self.mapping(item, "wait", at) or LineDict()
            params = item.get("params") or {}
            if not isinstance(params, dict):
                self.p.add(item.line_of("params"), f"{at}.params", "must be a mapping")
                params = {}
            self.template_params(params, template, f"{at}.params")
            steps.append(
                Step(
                    name=name,
                    template=template,
                    kind=cast(Any, step_kind),
                    wait=self.wait(wait_node, f"{at}.wait"),
                    params=plain(params),
                    line=item.line,
                )
            )
        return tuple(steps)

    def wait(self, node: LineDict, where: str) -> Wait:
        self.keys(node, _WAIT, where)
        on = node.get("date")
        if on is not None and not isinstance(on, date):
            self.p.add(
                node.line_of("date"),
                f"{where}.date",
                f"{on!r} is not a date",
                "write it unquoted as YYYY-MM-DD",
            )
            on = None
        anchor = self.choice(node, "after", where, {"previous", "trigger"}, "previous")
        origin = self.choice(node, "from", where, {"start", "end"}, None)
        return Wait(
            delay_ms=self.duration(node, "delay", where, 0),
            anchor=cast(Any, origin or anchor or "previous"),
            at=self.local_time(node, "at", where, None),
            on=on,
            days=self.parse(node, "days", where, whole, 0),
        )


__all__ = ["JourneysFileError", "load_journeys", "parse_journeys"]
