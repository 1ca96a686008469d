"""Settings, read once from the environment into frozen objects (SPEC §7).

Nothing else in Nudge reads `os.environ`: processes call `Settings.from_env()` at start and pass the
result (or the part they need) down explicitly.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from nudge.errors import ConfigError

# scheme://host[:port][/path], no whitespace or control characters, no query or fragment (paths
# are appended to it)
_WEB_BASE_URL = re.compile(r"https?://[^\s/?#\\\x00-\x1f\x7f]+(/[^\s?#\x00-\x1f\x7f]*)?", re.I)

SHIPPED_JOURNEYS = Path(__file__).with_name("journeys.yaml")


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
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError(
                f"SMTP_URL={url!r}: the scheme must be smtp:// or smtps://, "
                "e.g. smtp://user:pass@mail.example.com:587?starttls=1"
            )
        if not parts.hostname:
            raise ConfigError(f"SMTP_URL={url!r}: no host; e.g. smtp://127.0.0.1:2525")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit_tls = parts.scheme == "smtps"
        try:
            timeout = float(query.get("timeout", "30"))
        except ValueError as err:
            raise ConfigError(f"SMTP_URL: timeout={query['timeout']!r} is not a number") from err
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit_tls,
            start_tls=_flag(query.get("starttls", "0"), "starttls"),
            timeout=timeout,
            verify_certificates=_flag(query.get("verify", "1"), "verify"),
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
    # Links and tokens (unsubscribe, tracking)
    shop_url: str = "https://shop.example.com"
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
            kafka_bootstrap_servers=text(
                "KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers
            ),
            topic_prefix=env.get("NUDGE_TOPIC_PREFIX", defaults.topic_prefix),
            journeys_path=Path(text("NUDGE_JOURNEYS", str(defaults.journeys_path))),
            smtp=SmtpSettings.from_url(text("SMTP_URL", "smtp://127.0.0.1:2525")),
            delay_scale=_positive_float(env, "NUDGE_DELAY_SCALE", defaults.delay_scale),
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
            topic_partitions=_int(env, "NUDGE_TOPIC_PARTITIONS", defaults.topic_partitions),
            topic_replication_factor=_int(
                env, "NUDGE_REPLICATION_FACTOR", defaults.topic_replication_factor
            ),
            processor_web_port=_int(env, "NUDGE_PROCESSOR_PORT", defaults.processor_web_port),
            mail_from=text("NUDGE_MAIL_FROM", defaults.mail_from),
            sender_metrics_port=_int(env, "NUDGE_SENDER_PORT", defaults.sender_metrics_port),
            smtp_max_connections=_int(env, "SMTP_MAX_CONNECTIONS", defaults.smtp_max_connections),
            smtp_messages_per_connection=_int(
                env, "SMTP_MESSAGES_PER_CONNECTION", defaults.smtp_messages_per_connection
            ),
            send_max_attempts=_int(env, "NUDGE_SEND_MAX_ATTEMPTS", defaults.send_max_attempts),
            send_retry_base_seconds=_positive_float(
                env, "NUDGE_SEND_RETRY_BASE", defaults.send_retry_base_seconds
            ),
            sender_concurrency=_int(env, "NUDGE_SENDER_CONCURRENCY", defaults.sender_concurrency),
            iso2022jp_domains=_domains(env, "NUDGE_ISO2022JP_DOMAINS", defaults.iso2022jp_domains),
            domain_throttles=_throttles(env, "NUDGE_DOMAIN_THROTTLES", defaults.domain_throttles),
            shop_url=_web_url(env, "NUDGE_SHOP_URL", defaults.shop_url),
            public_base_url=_web_url(env, "NUDGE_PUBLIC_URL", defaults.public_base_url),
            # Without a configured secret every process start would invalidate the links in mail
            # already sent, so a random one is only acceptable for demos; docs say so.
            token_secret=secret.encode() or secrets.token_bytes(32),
            token_secret_random=not secret,
            # Retired secrets still accepted when verifying links (rotation; docs/links.md).
            token_secrets_previous=tuple(part.encode() for part in previous),
            web_port=_int(env, "NUDGE_WEB_PORT", defaults.web_port),
            tracking_enabled=_flag(env.get("NUDGE_TRACKING", "1"), "NUDGE_TRACKING"),
            log_format=_choice(env, "NUDGE_LOG_FORMAT", ("json", "console"), defaults.log_format),
            log_level=text("NUDGE_LOG_LEVEL", defaults.log_level).upper(),
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
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={value!r}: use 1 or 0")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from err
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _web_url(env: Mapping[str, str], name: str, default: str) -> str:
    """An absolute http(s) base URL, without its trailing slash: every link in mail is built on
    it, so `shop.example.com` (no scheme) or a stray space would send broken links to everyone."""
    raw = env.get(name, "").strip() or default
    if not _WEB_BASE_URL.fullmatch(raw):
        raise ConfigError(
            f"{name}={raw!r} is not an absolute http(s) URL; e.g. {name}=https://shop.example.com"
        )
    return raw.rstrip("/")


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ConfigError(f"{name}={raw!r} is not a number; e.g. {name}=0.001") from err
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
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
    raw = env.get(name)
    if raw is None:
        return default
    result = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        domain, sep, rate = part.partition("=")
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not sep or not domain.strip() or not value > 0:
            raise ConfigError(f"{name}: {part!r} is not domain=rate, e.g. docomo.ne.jp=20")
        result.append((domain.strip().lower(), value))
    return tuple(result)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip() or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: choose one of {', '.join(allowed)}")
    return value
