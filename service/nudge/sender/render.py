"""Rendering a mail template (subject, text, HTML) and the `nudge render` preview command.

Templates live in `nudge/templates/<locale>/<name>.subject.txt`, `<name>.txt` and `<name>.html`
(see docs/templates.md). HTML is autoescaped, every variable is strict (`StrictUndefined`): a
missing variable is a `TemplateError` naming the template and the variable, never an empty hole.
An unknown locale falls back to `ja`, the SPEC §8 default.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import jinja2
import orjson
import structlog

from nudge.catalog import LOCALES, PARTS, TEMPLATE_ROOT
from nudge.codec import is_clean_text
from nudge.commandline import USAGE, error, reason
from nudge.errors import ConfigError, InvalidCommand, TemplateError
from nudge.sender.flatten import flatten
from nudge.settings import Settings
from nudge.weburl import web_url_problem

log = structlog.get_logger("nudge.sender.render")
DEFAULT_LOCALE: Final = "ja"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_UNDEFINED = re.compile(r"'([^']+)' (?:is undefined|has no attribute '([^']+)')")
_ZERO_DECIMAL_CURRENCIES: Final = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
_EN_MONTHS: Final = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedMail:
    """The three visible parts of one mail, in the locale actually used."""

    template: str
    locale: str
    subject: str
    text: str
    html: str


def resolve_locale(locale: str | None) -> str:
    """`ja`, `ja-JP`, `en_US` → a shipped locale; anything else → `ja` (SPEC default)."""
    if locale:
        language = locale.replace("_", "-").split("-", 1)[0].lower()
        if language in LOCALES:
            return language
    return DEFAULT_LOCALE


class _Environment(jinja2.Environment):
    """A Jinja environment whose templates keep their globals in a plain dict.

    Jinja's default is a `ChainMap` over the environment's globals, so that later changes to
    those show through. Ours never change after construction, and the ChainMap costs: each
    `{% import %}` compares key sets with it and each render copies it, key by key in Python —
    about a fifth of rendering a mail. A snapshot dict does both in C.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class Renderer:
    """Compiles each template once, flattened (flatten.py), and renders it with strict variables.

    `flat=False` compiles them as Jinja does by default (layout, imports and macro calls at
    render time): the reference the flattened templates are tested against.
    """

    def __init__(
        self, root: Path = TEMPLATE_ROOT, *, flat: bool = True, variables_from: str = "the command"
    ) -> None:
        self.root = root
        self.flat = flat
        self.variables_from = variables_from  # named when a variable is missing
        self.env = _Environment(
            loader=jinja2.FileSystemLoader(str(root)),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        self.env.filters["money"] = money
        self.env.filters["when"] = when
        self.env.filters["link_url"] = link_url
        # Compiled templates by path, so the per-mail lookup is one dict hit instead of
        # Jinja's locked LRU cache and loader check (3 lookups per mail).
        self._compiled: dict[str, jinja2.Template] = {}

    def template_names(self) -> list[str]:
        """Every mail template shipped for the default locale (layouts start with `_`)."""
        return sorted(
            path.name.removesuffix(".subject.txt")
            for path in (self.root / DEFAULT_LOCALE).glob("*.subject.txt")
            if not path.name.startswith("_")
        )

    def render(
        self, template: str, locale: str | None, variables: Mapping[str, Any]
    ) -> RenderedMail:
        """Render all three parts, or raise `TemplateError` saying which template and variable."""
        if not _NAME.match(template):
            raise TemplateError(f"template name {template!r} is not a plain name like welcome")
        used = resolve_locale(locale)
        context = {"name": None, **variables, "locale": used}
        parts: list[str] = []
        for suffix in PARTS:
            path = f"{used}/{template}.{suffix}"
            try:
                compiled = self._compiled.get(path)
                if compiled is None:
                    compiled = self._compiled[path] = self._compile(path)
                parts.append(compiled.render(context))
            except jinja2.TemplateNotFound as err:
                raise TemplateError(
                    f"template {template!r} has no {err.name} (locale {used}); add it under "
                    f"nudge/templates/ or fix the journey's template name",
                    reason="template_not_found",
                ) from err
            except jinja2.TemplateSyntaxError as err:
                raise TemplateError(
                    f"template {err.name or path} line {err.lineno}: {err.message}"
                ) from err
            except jinja2.UndefinedError as err:
                raise TemplateError(
                    f"template {path}: variable {_variable(err)!r} is missing from "
                    f"{self.variables_from} ({err.message})",
                    reason="missing_variable",
                ) from err
            except (TypeError, ValueError, ArithmeticError) as err:
                raise TemplateError(
                    f"template {path}: a variable has the wrong type: {err}"
                ) from err
        # A subject template renders one line; a CR/LF (or any control character) in it came from
        # a variable and could forge a header: refuse it rather than quietly clean it.
        if not is_clean_text(parts[0]):
            raise TemplateError(
                f"template {used}/{template}.subject.txt renders a control character (CR/LF?) "
                "from a variable into the Subject header",
                reason="unsafe_header",
            )
        subject = parts[0].strip()
        if not subject:
            raise TemplateError(f"template {used}/{template}.subject.txt renders an empty subject")
        return RenderedMail(
            template=template, locale=used, subject=subject, text=parts[1] + "\n", html=parts[2]
        )

    def _compile(self, path: str) -> jinja2.Template:
        """The template at `path`, flattened when `flatten` can do it exactly."""
        env = self.env
        if not self.flat:
            return env.get_template(path)
        try:
            flat = flatten(self._parse(path), self._parse, frozenset(env.globals))
            if flat is not None:
                code = env.compile(flat, path, self._filename(path))
                return env.template_class.from_code(env, code, env.make_globals(None))
        except Exception as err:  # flattening may only ever make a template faster
            # A missing or broken file raises again just below, as Jinja reports it; anything
            # else is a flattener bug, which must cost speed, never a mail.
            if not isinstance(err, jinja2.TemplateNotFound | jinja2.TemplateSyntaxError):
                log.warning("render.flatten_failed", template=path, error=repr(err))
        return env.get_template(path)

    def _parse(self, path: str) -> jinja2.nodes.Template:
        assert self.env.loader is not None  # noqa: S101 - set in __init__
        source, filename, _uptodate = self.env.loader.get_source(self.env, path)
        return self.env.parse(source, path, filename)

    def _filename(self, path: str) -> str:
        return str(self.root / path)


def money(amount: Any, currency: str | None = "JPY", *, locale: str | None = None) -> str:
    """4800, JPY → `¥4,800`; 12.5, USD → `12.50 USD`. Numbers as strings are accepted.

    A null or empty currency (an order event that left it out as `null`) is JPY, the default,
    rather than `4,800.00 NONE` in a customer's mail.
    """
    code = str(currency or "JPY").strip().upper() or "JPY"
    if type(amount) is int:  # the usual case (yen): the same text, without a Decimal round trip
        if code in _ZERO_DECIMAL_CURRENCIES:
            return f"¥{amount:,}" if code == "JPY" else f"{amount:,} {code}"
        return f"{amount:,}.00 {code}"
    try:
        value = Decimal(str(amount))
    except InvalidOperation as err:
        raise ValueError(f"{amount!r} is not an amount") from err
    if code in _ZERO_DECIMAL_CURRENCIES:
        text = f"{value:,.0f}"
        return f"¥{text}" if code == "JPY" else f"{text} {code}"
    return f"{value:,.2f} {code}"


def link_url(value: Any) -> str:
    """`value` if it is a safe absolute http(s) URL (nudge.weburl); a `TemplateError`
    (`unsafe_url`) if not.

    For URLs that come from events (a tracking, reset or verification link): HTML escaping keeps
    them inside the `href`, but only this keeps a `javascript:` or `data:` URL out of a button.
    Refused, never cleaned, like a header value: the app has a bug (or an attacker a foothold).
    """
    text = str(value) if value is not None else ""
    problem = web_url_problem(text)
    if problem is not None:
        raise TemplateError(
            f"the link {text[:80]!r} from the command's variables is not a safe absolute http(s) "
            f"URL ({problem}); fix it at its source (the event's property)",
            reason="unsafe_url",
        )
    return text


@jinja2.pass_context
def when(context: Any, value: Any, *, as_written: bool = False) -> str:
    """An ISO date or timestamp as readers expect it, in the mail's locale and the reader's time
    zone (`timezone`, a `tzinfo` the sender adds; without one, or for a timestamp without an
    offset: as written).

    `as_written=true` keeps the timestamp's own offset, for the times the engine writes in the
    user's zone (a coupon's or discount's expiry): `timezone` is only the offset at sending, and
    converting `2026-11-30T23:59:59-05:00` to New York's summer `-04:00` would read 00:59 on
    1 December.
    """
    parsed: date | datetime
    if isinstance(value, date):
        parsed = value
    else:
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)
        except ValueError:
            return text  # already human text (e.g. "12月1日"); show it as written
    zone = context.get("timezone")
    if (
        isinstance(parsed, datetime)
        and parsed.tzinfo is not None
        and isinstance(zone, tzinfo)
        and not as_written
    ):
        # An app that writes `expires_at` in UTC means the same instant, not 02:15 in Tokyo.
        parsed = parsed.astimezone(zone)
    is_ja = context.get("locale") == "ja"
    if isinstance(parsed, datetime):
        if is_ja:
            return f"{parsed.year}年{parsed.month}月{parsed.day}日 {parsed:%H:%M}"
        return f"{parsed.day} {_EN_MONTHS[parsed.month - 1]} {parsed.year}, {parsed:%H:%M}"
    if is_ja:
        return f"{parsed.year}年{parsed.month}月{parsed.day}日"
    return f"{parsed.day} {_EN_MONTHS[parsed.month - 1]} {parsed.year}"


def sample_variables() -> dict[str, dict[str, Any]]:
    """Sample variables per template (`templates/samples.json`), for previews and tests."""
    data: dict[str, dict[str, Any]] = orjson.loads((TEMPLATE_ROOT / "samples.json").read_bytes())
    data.pop("_comment", None)
    return data


def _variable(err: jinja2.UndefinedError) -> str:
    match = _UNDEFINED.search(err.message or "")
    if not match:
        return "?"
    return match.group(2) or match.group(1)


# `nudge render` --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = Renderer().template_names()
    parser.add_argument("template", help=f"template name: {', '.join(names)} (in {TEMPLATE_ROOT})")
    parser.add_argument(
        "--locale",
        type=_shipped_locale,
        default=DEFAULT_LOCALE,
        help=f"language of the mail: {' or '.join(LOCALES)} (ja-JP, en_US and the like too)",
    )
    parser.add_argument(
        "--vars",
        type=Path,
        help="JSON file with the variables, an object (default: the template's samples)",
    )
    parser.add_argument(
        "--kind",
        choices=("transactional", "marketing"),
        help="marketing adds the unsubscribe link and headers and the sender's identity "
        "(default: the kind of the step that sends this template in NUDGE_JOURNEYS, else "
        "transactional)",
    )
    parser.add_argument("--to", default="hana@example.jp", help="recipient for the preview")
    parser.add_argument("--eml", type=Path, help="write the complete MIME message to this file")


def _shipped_locale(text: str) -> str:
    """A locale with templates (as `resolve_locale` reads it): a preview never falls back."""
    language = text.replace("_", "-").split("-", 1)[0].lower()
    if language not in LOCALES:
        raise argparse.ArgumentTypeError(
            f"no templates for {text!r}; the shipped locales are {', '.join(LOCALES)}"
        )
    return language


def main(args: argparse.Namespace, settings: Settings) -> int:
    from nudge.sender.compose import preview_message  # it imports this module

    names = Renderer().template_names()
    if args.template not in names:
        close = difflib.get_close_matches(args.template, names, n=1)
        error(
            "render",
            f"no template {args.template!r} in {TEMPLATE_ROOT}"
            + (f" (did you mean {close[0]}?)" if close else ""),
            hint=f"the templates are {', '.join(names)}",
        )
        return USAGE
    variables: dict[str, Any] = sample_variables().get(args.template, {})
    source = f"the samples of {args.template} ({TEMPLATE_ROOT / 'samples.json'})"
    if args.vars is not None:
        source = f"--vars {args.vars}"
        try:
            loaded = orjson.loads(args.vars.read_bytes())
        except OSError as err:
            error("render", f"cannot read --vars {args.vars}: {reason(err, args.vars)}")
            return USAGE
        except orjson.JSONDecodeError as err:
            # Not orjson's reason, which is a guess from the first letter ("expected 'true'").
            where = f"line {err.lineno}, column {err.colno}"
            error("render", f"--vars {args.vars} is not JSON ({where})")
            return USAGE
        if not isinstance(loaded, dict):
            error(
                "render",
                f"--vars {args.vars} must hold a JSON object, got {_json_kind(loaded)}",
                hint='e.g. {"name": "Hana", "order_id": "o-1"}',
            )
            return USAGE
        variables = loaded
    try:
        mail, raw = preview_message(
            settings,
            template=args.template,
            locale=args.locale,
            kind=args.kind or kind_in_journeys(settings, args.template),
            to=args.to,
            variables=variables,
            variables_from=source,
        )
    except TemplateError as err:
        hint = ""
        if err.reason == "missing_variable":
            hint = "add it there" + (", or leave --vars out for the samples" if args.vars else "")
        error("render", str(err), hint=hint)
        return USAGE
    except InvalidCommand as err:  # a bad --to, or NUDGE_MAIL_FROM
        error("render", str(err))
        return USAGE
    if args.eml is not None:
        try:
            args.eml.parent.mkdir(parents=True, exist_ok=True)
            args.eml.write_bytes(raw)
        except OSError as err:
            error("render", f"cannot write --eml {args.eml}: {reason(err, args.eml)}")
            return USAGE
        print(f"wrote {args.eml} ({len(raw)} bytes, locale {mail.locale})")
        return 0
    print(f"Subject: {mail.subject}\n\n--- text ---\n{mail.text}\n--- html ---\n{mail.html}")
    return 0


def kind_in_journeys(settings: Settings, template: str) -> str:
    """The kind of the first step (or A/B variant of one) that sends `template` in the configured
    journeys file, so a preview shows what recipients get; "transactional" when none does or the
    file cannot be read (`nudge validate` is the place to learn why)."""
    from nudge.journeys.loader import load_journeys  # only a preview needs it here

    try:
        config = load_journeys(settings.journeys_path)
    except ConfigError:
        return "transactional"
    for journey in config.journeys:
        for step in journey.steps:
            variant_templates = (v.templates.get(step.name) for v in journey.variants)
            if template == step.template or template in variant_templates:
                return str(step.kind)
    return "transactional"


def _json_kind(value: object) -> str:
    kinds = {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
    }
    return kinds.get(type(value), "null")
