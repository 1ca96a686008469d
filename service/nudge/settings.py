"""Settings, read once from the environment into frozen objects (SPEC §7).

Nothing else in Nudge reads `os.environ`: processes call `Settings.from_env()` at start and pass the
result (or the part they need) down explicitly.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from nudge.errors import ConfigError
from nudge.weburl import web_url_problem

N = TypeVar("N", int, float)

SHIPPED_JOURNEYS = Path(__file__).with_name("journeys.yaml")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_SMTP_OPTIONS = ("starttls", "timeout", "verify")
_SMTP_EXAMPLE = "smtp://user:pass@mail.example.com:587?starttls=1"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# A larger scale only stretches waits past any use, and 1e300 overflows the due-time arithmetic.
_MAX_DELAY_SCALE = 1000.0
# An addr-spec of dot-atoms (RFC 5322 §3.4.1), the form a From address is configured in.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = re.compile(rf"{_ATOM}(\.{_ATOM})*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What would break a one-line footer entry: C0 and C1 controls (CR, LF, tab, NEL) and the Unicode
# line and paragraph separators.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A complaints-and-enquiries contact holds at least one of these (searched in its NFKC form, so
# full-width ０３－１２３４－５６７８ counts); text around it (opening hours) is allowed.
_CONTACT_SHAPES = (
    re.compile(r"[^\s@<>()]+@[^\s@<>()]+\.[^\s@<>().]+"),  # an e-mail address
    re.compile(r"https?://[^\s/?#\\.]+\.[^\s/?#\\]+", re.I),  # an http(s) URL with a dotted host
    # A telephone number: 8 or more digits (a Japanese one has 10 or 11, a postal code 7) with the
    # usual separators between them, one at a time.
    re.compile(r"\+?\d(?:[ ().\-\u2010-\u2015\u2212\u30fc]?\d){7,}"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    """Where and how to deliver mail, parsed from `SMTP_URL`.

    `smtp://user:pass@host:587?starttls=1` (STARTTLS), `smtps://user:pass@host:465` (implicit TLS),
    `smtp://127.0.0.1:2525` (plain, the local sink). Query options: `starttls`, `timeout` (seconds),
    `verify` (0 to skip certificate checks, for staging only).
    """

    host: str = "127.0.0.1"
    port: int = 2525
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool = False
    timeout: float = 30.0
    verify_certificates: bool = True

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """The settings in `url`; a `ConfigError` naming SMTP_URL, its password masked, if bad."""
        # Every message shows the URL masked: it goes to stderr, i.e. the container log.
        shown = f"SMTP_URL={_masked(url)!r}"
        try:
            parts = urlsplit(url)
        except ValueError as err:
            raise ConfigError(f"{shown} is not a URL; e.g. {_SMTP_EXAMPLE}") from err
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError(
                f"{shown}: the scheme must be smtp:// or smtps://; e.g. {_SMTP_EXAMPLE}"
            )
        if "@" in url and "@" not in parts.netloc:
            # A `/`, `?` or `#` in the password ends the host part early: the rest would be read
            # as the host, port, path or an option, so say nothing of it but this.
            raise ConfigError(
                f"{shown}: the user name or password holds a / ? or # that ends the host part; "
                f"percent-encode it (/ is %2F, ? is %3F, # is %23); e.g. {_SMTP_EXAMPLE}"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ConfigError(
                f"{shown}: the port must be a number from 1 to 65535; e.g. {_SMTP_EXAMPLE}"
            )
        if not parts.hostname:
            raise ConfigError(f"{shown}: no host; e.g. smtp://127.0.0.1:2525")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        for option in query:
            if option not in _SMTP_OPTIONS:
                close = get_close_matches(option, _SMTP_OPTIONS, n=1)
                guess = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"{shown}: unknown option {option!r}{guess}; the options are "
                    f"{', '.join(_SMTP_OPTIONS)}; e.g. {_SMTP_EXAMPLE}"
                )
        implicit_tls = parts.scheme == "smtps"
        start_tls = _smtp_flag(query, "starttls", default=False, shown=shown)
        if implicit_tls and start_tls:
            # One or the other: smtps:// is TLS from the first byte (port 465), starttls upgrades a
            # plain connection (port 587). Both at once was read as smtps:// alone.
            raise ConfigError(
                f"{shown}: smtps:// is already TLS; drop ?starttls, or use smtp://…:587?starttls=1"
            )
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit_tls,
            start_tls=start_tls,
            timeout=_smtp_timeout(query, shown=shown),
            verify_certificates=_smtp_flag(query, "verify", default=True, shown=shown),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a Nudge process can be told from its environment; see docs/configuration.md."""

    kafka_bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = "nudge."
    journeys_path: Path = SHIPPED_JOURNEYS
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    delay_scale: float = 1.0
    # Processor
    state_dir: Path = Path(".cache/state")
    processing_guarantee: str = "at_least_once"
    table_standby_replicas: int = 0
    topic_partitions: int = 4
    topic_replication_factor: int = 1
    processor_web_port: int = 6066
    # Sender
    mail_from: str = "Nudge Shop <shop@example.com>"
    sender_metrics_port: int = 9465
    smtp_max_connections: int = 8
    smtp_messages_per_connection: int = 100
    send_max_attempts: int = 8
    send_retry_base_seconds: float = 30.0
    sender_concurrency: int = 512
    # Legacy Japanese carrier domains whose handsets expect ISO-2022-JP rather than UTF-8 mail.
    iso2022jp_domains: tuple[str, ...] = (
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "softbank.ne.jp",
        "i.softbank.jp",
    )
    # Per-recipient-domain throttles: (domain, messages per second); carriers rate-limit senders.
    domain_throttles: tuple[tuple[str, float], ...] = (
        ("docomo.ne.jp", 20.0),
        ("ezweb.ne.jp", 20.0),
        ("au.com", 20.0),
        ("softbank.ne.jp", 20.0),
        ("i.softbank.jp", 20.0),
    )
    # Per-recipient-domain session caps: (domain, SMTP transactions at once); carriers also
    # limit how many connections one sender holds open to them.
    domain_sessions: tuple[tuple[str, int], ...] = (
        ("docomo.ne.jp", 4),
        ("ezweb.ne.jp", 4),
        ("au.com", 4),
        ("softbank.ne.jp", 4),
        ("i.softbank.jp", 4),
    )
    # Links and tokens (unsubscribe, tracking)
    shop_url: str = "https://shop.example.com"
    # Japan's Act on Specified Electronic Mail (Article 4): marketing mail shows who sends it, their
    # postal address and a contact for complaints; the layouts print these in its footer. An empty
    # name means the shop name (the display name of `mail_from`, else its domain).
    sender_name: str = ""
    sender_address: str = ""
    sender_contact: str = ""
    public_base_url: str = "http://127.0.0.1:8080"
    token_secret: bytes = field(default=b"", repr=False)
    token_secrets_previous: tuple[bytes, ...] = field(default=(), repr=False)
    # NUDGE_TOKEN_SECRET unset: `token_secret` is random for this process only, so no other
    # process verifies its links (the sender and `nudge web` warn at start).
    token_secret_random: bool = False
    web_port: int = 8080
    tracking_enabled: bool = True
    # Logs
    log_format: str = "json"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()

        def text(name: str, default: str) -> str:
            return env.get(name, default).strip() or default

        # Both secret variables read alike: surrounding whitespace (a secret file's newline) is
        # not part of a secret, so a secret retired into the previous list keeps verifying.
        secret = _token_secret(env, "NUDGE_TOKEN_SECRET")
        previous = _token_secrets(env, "NUDGE_TOKEN_SECRET_PREVIOUS")
        return cls(
            kafka_bootstrap_servers=_not_blank(
                env, "KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers
            ),
            topic_prefix=env.get("NUDGE_TOPIC_PREFIX", defaults.topic_prefix),
            journeys_path=Path(text("NUDGE_JOURNEYS", str(defaults.journeys_path))),
            smtp=SmtpSettings.from_url(text("SMTP_URL", "smtp://127.0.0.1:2525")),
            delay_scale=_positive_float(
                env, "NUDGE_DELAY_SCALE", defaults.delay_scale, most=_MAX_DELAY_SCALE
            ),
            state_dir=Path(text("NUDGE_STATE_DIR", str(defaults.state_dir))),
            processing_guarantee=_choice(
                env,
                "NUDGE_PROCESSING_GUARANTEE",
                ("at_least_once", "exactly_once"),
                defaults.processing_guarantee,
            ),
            table_standby_replicas=_int(
                env, "NUDGE_STANDBY_REPLICAS", defaults.table_standby_replicas
            ),
            topic_partitions=_int(
                env, "NUDGE_TOPIC_PARTITIONS", defaults.topic_partitions, least=1
            ),
            topic_replication_factor=_int(
                env, "NUDGE_REPLICATION_FACTOR", defaults.topic_replication_factor, least=1
            ),
            processor_web_port=_port(env, "NUDGE_PROCESSOR_PORT", defaults.processor_web_port),
            mail_from=_mail_from(env, "NUDGE_MAIL_FROM", defaults.mail_from),
            # 0: no HTTP endpoints (`nudge sender --port` documents it; the benchmark uses it).
            sender_metrics_port=_port(
                env, "NUDGE_SENDER_PORT", defaults.sender_metrics_port, zero_allowed=True
            ),
            smtp_max_connections=_int(
                env, "SMTP_MAX_CONNECTIONS", defaults.smtp_max_connections, least=1
            ),
            smtp_messages_per_connection=_int(
                env,
                "SMTP_MESSAGES_PER_CONNECTION",
                defaults.smtp_messages_per_connection,
                least=1,
            ),
            send_max_attempts=_int(
                env, "NUDGE_SEND_MAX_ATTEMPTS", defaults.send_max_attempts, least=1
            ),
            send_retry_base_seconds=_positive_float(
                env, "NUDGE_SEND_RETRY_BASE", defaults.send_retry_base_seconds
            ),
            sender_concurrency=_int(
                env, "NUDGE_SENDER_CONCURRENCY", defaults.sender_concurrency, least=1
            ),
            iso2022jp_domains=_domains(env, "NUDGE_ISO2022JP_DOMAINS", defaults.iso2022jp_domains),
            domain_throttles=_throttles(env, "NUDGE_DOMAIN_THROTTLES", defaults.domain_throttles),
            domain_sessions=_sessions(env, "NUDGE_DOMAIN_SESSIONS", defaults.domain_sessions),
            shop_url=_web_url(env, "NUDGE_SHOP_URL", defaults.shop_url),
            sender_name=_one_line(env, "NUDGE_SENDER_NAME", example="Nudge Shop K.K."),
            sender_address=_one_line(
                env, "NUDGE_SENDER_ADDRESS", example="1-2-3 Marunouchi, Chiyoda-ku, Tokyo 100-0005"
            ),
            sender_contact=_contact(env, "NUDGE_SENDER_CONTACT"),
            public_base_url=_web_url(env, "NUDGE_PUBLIC_URL", defaults.public_base_url),
            # Without a configured secret every process start would invalidate the links in mail
            # already sent, so a random one is only acceptable for demos; docs say so.
            token_secret=secret.encode() or secrets.token_bytes(32),
            token_secret_random=not secret,
            # Retired secrets still accepted when verifying links (rotation; docs/links.md).
            token_secrets_previous=tuple(part.encode() for part in previous),
            web_port=_port(env, "NUDGE_WEB_PORT", defaults.web_port),
            tracking_enabled=_flag(env.get("NUDGE_TRACKING", "").strip() or "1", "NUDGE_TRACKING"),
            log_format=_choice(env, "NUDGE_LOG_FORMAT", ("json", "console"), defaults.log_format),
            log_level=_log_level(env, "NUDGE_LOG_LEVEL", defaults.log_level),
        )


def _token_secret(env: Mapping[str, str], name: str) -> str:
    """One secret, surrounding whitespace stripped like each retired one (`_token_secrets`).

    A comma is refused: `NUDGE_TOKEN_SECRET_PREVIOUS` separates secrets with commas, so a secret
    holding one could never be retired there, and rotating it would refuse every link it signed.
    """
    value = env.get(name, "")
    if "," in value:
        raise ConfigError(
            f"{name} contains a comma, which NUDGE_TOKEN_SECRET_PREVIOUS uses to separate "
            "secrets, so this one could never be rotated out; choose a secret without commas, "
            "e.g. the output of `openssl rand -hex 32`"
        )
    return value.strip()


def _token_secrets(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of secrets, each stripped, blank entries left out."""
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _flag(value: str, name: str) -> bool:
    # Blank means unset, as for every other variable: a template that left it empty keeps the
    # default rather than switching the feature off.
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r}: use 1 or 0")


def _smtp_flag(query: Mapping[str, str], option: str, *, default: bool, shown: str) -> bool:
    """An SMTP_URL switch: 1 or 0 (true/false, yes/no, on/off); `?starttls=` is not a value."""
    value = query.get(option)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{shown}: {option}={value!r} must be 1 or 0; e.g. {_SMTP_EXAMPLE}")


def _smtp_timeout(query: Mapping[str, str], *, shown: str) -> float:
    raw = query.get("timeout", "30")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{shown}: timeout={raw!r} must be a number of seconds greater than 0; "
            "e.g. smtp://127.0.0.1:2525?timeout=10"
        )
    return value


def _masked(url: str) -> str:
    """`url` with any password replaced by `***`, for messages; it may be any malformed text.

    Everything between the user name and the last `@` is masked (a password may hold `@`, `/`,
    `#`...); with no `@`, a `name:text` whose text is not a port number may be `user:password`
    with the host forgotten, so the text is masked too.
    """
    scheme, sep, rest = url.partition("://")
    prefix = scheme + sep if sep else ""
    rest = rest if sep else url
    userinfo, at, host = rest.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        return f"{prefix}{user}:***@{host}" if colon else url
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    name, colon, port = authority.partition(":")
    if colon and not authority.startswith("[") and not port.isdigit():
        return f"{prefix}{name}:***{rest[len(authority) :]}"
    return url


def _int(env: Mapping[str, str], name: str, default: int, *, least: int = 0) -> int:
    """A whole number ≥ `least` (1 for counts where 0 would mean nothing works)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ConfigError(f"{name}={raw!r} is not a whole number; e.g. {name}={default}") from err
    if value < least:
        rule = "must not be negative" if least == 0 else f"must be at least {least}"
        raise ConfigError(f"{name}={raw!r} {rule}; e.g. {name}={default}")
    return value


def _port(env: Mapping[str, str], name: str, default: int, *, zero_allowed: bool = False) -> int:
    """A TCP port to listen on, 1–65535; 0 only where it means "no endpoint"."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    lowest = 0 if zero_allowed else 1
    if not lowest <= value <= 65535:
        raise ConfigError(
            f"{name}={raw!r} is not a port number from {lowest} to 65535"
            f"{' (0: none)' if zero_allowed else ''}; e.g. {name}={default}"
        )
    return value


def _not_blank(env: Mapping[str, str], name: str, default: str) -> str:
    """Unset means the default; set but blank is refused: a deployment template that left it
    empty would otherwise talk to the default (localhost) without a word."""
    raw = env.get(name)
    if raw is None:
        return default
    if not raw.strip():
        raise ConfigError(
            f"{name} is set but blank; unset it for {default}, or name the servers, "
            f"e.g. {name}=kafka-1:9092,kafka-2:9092"
        )
    return raw.strip()


def _mail_from(env: Mapping[str, str], name: str, default: str) -> str:
    """One `Name <address>` or bare address, parsed as the sender parses it (`parseaddr`).

    `parseaddr` takes the first of several addresses and skips what it cannot read, so the value
    must also read as exactly that one address; CR/LF would inject header lines.
    """
    raw = env.get(name, "").strip() or default
    parsed = parseaddr(raw)
    if _CONTROL.search(raw) or getaddresses([raw]) != [parsed] or not _ADDRESS.fullmatch(parsed[1]):
        raise ConfigError(
            f"{name}={raw!r} is not one mail address (ASCII local@domain, with or without "
            f"a name); e.g. {name}='Nudge Shop <shop@example.com>'"
        )
    return raw


def _one_line(env: Mapping[str, str], name: str, *, example: str) -> str:
    """Free text shown on one line of every marketing mail's footer; unset or blank is empty.

    A line break would end the line early in the text part (and a control character shows as
    garbage), so either is refused rather than cleaned.
    """
    raw = env.get(name, "")
    value = raw.strip()
    if _LINE_BREAKING.search(value):
        raise ConfigError(
            f"{name}={raw!r} holds a line break or control character; write it on one line, "
            f"e.g. {name}={example!r}"
        )
    return value


def _contact(env: Mapping[str, str], name: str) -> str:
    """One line holding an e-mail address, a telephone number or an http(s) URL (or empty).

    Checked loosely, only that one of them is there (`03-1234-5678（平日 10–18 時）` is fine): a
    name or a postal address put here by mistake would leave the mail without the contact the
    law asks for.
    """
    value = _one_line(env, name, example="support@shop.example.com")
    normalised = unicodedata.normalize("NFKC", value)
    if value and not any(shape.search(normalised) for shape in _CONTACT_SHAPES):
        raise ConfigError(
            f"{name}={env[name]!r} holds no e-mail address, telephone number or http(s) URL; "
            f"e.g. {name}=support@shop.example.com"
        )
    return value


def _log_level(env: Mapping[str, str], name: str, default: str) -> str:
    level = env.get(name, "").strip().upper() or default
    if level not in _LOG_LEVELS:
        raise ConfigError(
            f"{name}={env[name]!r}: choose one of {', '.join(_LOG_LEVELS)}; e.g. {name}=INFO"
        )
    return level


def _web_url(env: Mapping[str, str], name: str, default: str) -> str:
    """An absolute http(s) base URL (nudge.weburl's rule), without its trailing slash: every link
    in mail is built on it, so `shop.example.com` (no scheme) or a stray space would send broken
    links to everyone. No query or fragment either: paths are appended to it."""
    raw = env.get(name, "").strip() or default
    problem = web_url_problem(raw)
    if problem is None and ("?" in raw or "#" in raw):
        problem = "it has a query or fragment, and the links in mail append paths to it"
    if problem is not None:
        raise ConfigError(
            f"{name}={raw!r} is not a safe absolute http(s) URL: {problem}; "
            f"e.g. {name}=https://shop.example.com"
        )
    return raw.rstrip("/")


def _positive_float(
    env: Mapping[str, str], name: str, default: float, *, most: float = math.inf
) -> float:
    """A finite number > 0 (and ≤ `most`): inf or nan would overflow the time arithmetic."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ConfigError(f"{name}={raw!r} is not a number; e.g. {name}={default:g}") from err
    if not (math.isfinite(value) and 0 < value <= most):
        limit = "" if most == math.inf else f" and at most {most:g}"
        raise ConfigError(
            f"{name}={raw!r} must be a number greater than 0{limit}; e.g. {name}={default:g}"
        )
    return value


def _domains(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


def _throttles(
    env: Mapping[str, str], name: str, default: tuple[tuple[str, float], ...]
) -> tuple[tuple[str, float], ...]:
    """`docomo.ne.jp=20,ezweb.ne.jp=10`: messages per second per recipient domain."""
    return _per_domain(env, name, default, float, "domain=rate, e.g. docomo.ne.jp=20")


def _sessions(
    env: Mapping[str, str], name: str, default: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, int], ...]:
    """`docomo.ne.jp=4,ezweb.ne.jp=2`: SMTP transactions at once per recipient domain."""
    return _per_domain(env, name, default, int, "domain=count (1 or more), e.g. docomo.ne.jp=4")


def _per_domain(
    env: Mapping[str, str],
    name: str,
    default: tuple[tuple[str, N], ...],
    kind: Callable[[str], N],
    form: str,
) -> tuple[tuple[str, N], ...]:
    """`domain=value,...` with each value of `kind` and above 0; empty: none."""
    raw = env.get(name)
    if raw is None:
        return default
    result = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        domain, sep, text = part.partition("=")
        try:
            value = kind(text.strip())
        except ValueError:
            value = kind("0")
        if not sep or not domain.strip() or not value > 0 or not math.isfinite(value):
            raise ConfigError(f"{name}: {part!r} is not {form}")
        result.append((domain.strip().lower(), value))
    return tuple(result)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip() or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: choose one of {', '.join(allowed)}")
    return value
