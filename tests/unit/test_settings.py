"""Settings read from the environment: a bad value stops the process at start, naming it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import nudge
from nudge.errors import ConfigError
from nudge.settings import Settings, SmtpSettings


@pytest.mark.parametrize("name", ["NUDGE_SHOP_URL", "NUDGE_PUBLIC_URL"])
@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("https://shop.example.jp", "https://shop.example.jp"),
        ("https://shop.example.jp/", "https://shop.example.jp"),
        (" http://127.0.0.1:8080/links/ \n", "http://127.0.0.1:8080/links"),
        ("HTTPS://Shop.Example.jp/ja", "HTTPS://Shop.Example.jp/ja"),
    ],
)
def test_a_base_url_is_read_without_its_trailing_slash(name: str, written: str, read: str) -> None:
    assert getattr(Settings.from_env({name: written}), _field(name)) == read


@pytest.mark.parametrize("name", ["NUDGE_SHOP_URL", "NUDGE_PUBLIC_URL"])
@pytest.mark.parametrize(
    "written",
    [
        "shop.example.jp",  # no scheme: every link would be relative, i.e. broken
        "//shop.example.jp",
        "javascript:alert(1)",
        "ftp://shop.example.jp",
        "https://",
        "https://shop example.jp",
        "https://shop.example.jp/?utm=x",  # paths are appended to it
        "https://shop.example.jp/#top",
        "https://shop.example.jp/\x00",
        # nudge.weburl's rule, the same as for every link in mail (tests/unit/test_weburl.py)
        "https://user@evil.example",  # the reader takes `user` for the site
        "https://shop.example.jp\\@evil.example",
        "https://shop.example.jp/ja\\",  # a backslash, which browsers read as `/`
        "https://shop.example.jp:0",
        "https://shop..example.jp",
        "https://shop.example.jp/\u202e",  # invisible: a bidi override
        "https://shop.example.jp/\x80",  # a C1 control
    ],
)
def test_a_base_url_that_is_not_an_absolute_web_url_is_refused_at_start(
    name: str, written: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: written})


def test_a_refused_base_url_says_what_is_wrong_with_it() -> None:
    """The message names the variable and the problem, so the operator knows what to change."""
    with pytest.raises(ConfigError, match=r"NUDGE_SHOP_URL=.*user name before its host"):
        Settings.from_env({"NUDGE_SHOP_URL": "https://user@shop.example.jp"})


def test_unset_base_urls_keep_their_defaults() -> None:
    settings = Settings.from_env({"NUDGE_SHOP_URL": " ", "NUDGE_PUBLIC_URL": ""})
    assert settings.shop_url == "https://shop.example.com"
    assert settings.public_base_url == "http://127.0.0.1:8080"


def _field(name: str) -> str:
    return {"NUDGE_SHOP_URL": "shop_url", "NUDGE_PUBLIC_URL": "public_base_url"}[name]


# Each stops the process at start with one line naming the variable (docs/configuration.md).
REFUSED = [
    ("NUDGE_DELAY_SCALE", "inf"),
    ("NUDGE_DELAY_SCALE", "-inf"),
    ("NUDGE_DELAY_SCALE", "nan"),
    ("NUDGE_DELAY_SCALE", "1e300"),  # overflows the due-time arithmetic
    ("NUDGE_SEND_RETRY_BASE", "inf"),
    ("NUDGE_MAIL_FROM", "not an address"),
    ("NUDGE_MAIL_FROM", "shop.example.com"),
    ("NUDGE_MAIL_FROM", "Nudge Shop <shop@>"),
    ("NUDGE_MAIL_FROM", "@example.com"),
    ("NUDGE_MAIL_FROM", "shop@example.com, other@example.com"),  # the sender takes the first
    ("NUDGE_MAIL_FROM", "Nudge Shop, Inc. <shop@example.com>"),  # unquoted comma: two
    ("NUDGE_MAIL_FROM", "Shop <shop@example.com>\r\nBcc: everyone@example.com"),
    ("NUDGE_MAIL_FROM", "shop@例え.jp"),  # the sender refuses a non-ASCII address
    ("NUDGE_WEB_PORT", "99999"),
    ("NUDGE_WEB_PORT", "0"),  # a random port nobody can find
    ("NUDGE_WEB_PORT", "-1"),
    ("NUDGE_PROCESSOR_PORT", "65536"),
    ("NUDGE_PROCESSOR_PORT", "0"),
    ("NUDGE_SENDER_PORT", "99999"),
    ("NUDGE_SENDER_PORT", "http"),
    ("NUDGE_LOG_LEVEL", "LOUD"),
    ("NUDGE_LOG_LEVEL", "verbose"),
    ("NUDGE_TOPIC_PARTITIONS", "0"),
    ("NUDGE_REPLICATION_FACTOR", "0"),
    ("SMTP_MAX_CONNECTIONS", "0"),
    ("SMTP_MESSAGES_PER_CONNECTION", "0"),
    ("NUDGE_SENDER_CONCURRENCY", "0"),
    ("NUDGE_SEND_MAX_ATTEMPTS", "0"),
    ("NUDGE_DOMAIN_SESSIONS", "docomo.ne.jp=0"),
    ("NUDGE_DOMAIN_SESSIONS", "docomo.ne.jp"),
    ("NUDGE_DOMAIN_SESSIONS", "docomo.ne.jp=2.5"),
    ("NUDGE_DOMAIN_SESSIONS", "=4"),
    ("NUDGE_DOMAIN_SESSIONS", "docomo.ne.jp=²"),  # a digit to isdigit(), not to int()
    ("NUDGE_DOMAIN_THROTTLES", "docomo.ne.jp=inf"),
    ("NUDGE_DOMAIN_THROTTLES", "docomo.ne.jp=0"),
    ("KAFKA_BOOTSTRAP_SERVERS", ""),  # a template left it empty: not "use localhost"
    ("KAFKA_BOOTSTRAP_SERVERS", "  "),
]


@pytest.mark.parametrize(("name", "value"), REFUSED)
def test_a_bad_value_is_refused_at_start_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name) as refused:
        Settings.from_env({name: value})
    assert "\n" not in str(refused.value)
    assert "e.g." in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value", "field", "read"),
    [
        ("NUDGE_SENDER_PORT", "0", "sender_metrics_port", 0),  # 0: no HTTP endpoints
        ("NUDGE_WEB_PORT", "65535", "web_port", 65535),
        ("NUDGE_PROCESSOR_PORT", "1", "processor_web_port", 1),
        ("NUDGE_STANDBY_REPLICAS", "0", "table_standby_replicas", 0),
        ("NUDGE_DELAY_SCALE", "0.001", "delay_scale", 0.001),
        ("NUDGE_DELAY_SCALE", "1000", "delay_scale", 1000.0),
        ("NUDGE_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("NUDGE_LOG_LEVEL", " warning ", "log_level", "WARNING"),
        ("NUDGE_LOG_LEVEL", "", "log_level", "INFO"),
        ("NUDGE_MAIL_FROM", "shop@example.com", "mail_from", "shop@example.com"),
        ("NUDGE_MAIL_FROM", "ナッジ <shop@example.jp>", "mail_from", "ナッジ <shop@example.jp>"),
        (
            "NUDGE_MAIL_FROM",
            '"Nudge Shop, Inc." <shop@example.com>',
            "mail_from",
            '"Nudge Shop, Inc." <shop@example.com>',
        ),
        ("NUDGE_MAIL_FROM", " ", "mail_from", "Nudge Shop <shop@example.com>"),
        ("NUDGE_TRACKING", "0", "tracking_enabled", False),
        ("NUDGE_TRACKING", "", "tracking_enabled", True),  # blank is unset, not off
        ("NUDGE_TRACKING", " ", "tracking_enabled", True),
        ("KAFKA_BOOTSTRAP_SERVERS", " kafka:9092 ", "kafka_bootstrap_servers", "kafka:9092"),
        (
            "NUDGE_DOMAIN_SESSIONS",
            "Docomo.ne.jp=2, au.com=8",
            "domain_sessions",
            (("docomo.ne.jp", 2), ("au.com", 8)),
        ),
        ("NUDGE_DOMAIN_SESSIONS", "", "domain_sessions", ()),  # empty: no cap
    ],
)
def test_a_good_value_is_read(name: str, value: str, field: str, read: object) -> None:
    assert getattr(Settings.from_env({name: value}), field) == read


def test_the_spec_defaults() -> None:
    """SPEC §7: Kafka at localhost:9092, every name under `nudge.`, the shipped journeys file,
    waits and windows as written (scale 1)."""
    read = Settings.from_env({})
    assert read.kafka_bootstrap_servers == "localhost:9092"
    assert read.topic_prefix == "nudge."
    assert read.journeys_path == Path(nudge.__file__).with_name("journeys.yaml")
    assert read.journeys_path.is_file()
    assert read.delay_scale == 1.0


def test_unset_variables_keep_their_defaults() -> None:
    # Only the secret differs: random per process when NUDGE_TOKEN_SECRET is unset.
    read = replace(Settings.from_env({}), token_secret=b"", token_secret_random=False)
    assert read == Settings()


PASSWORD = "S3cretPassw0rd"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"smpt://mailer:{PASSWORD}@mail.example.com:587?starttls=1", "scheme"),
        (f"smtp://mailer:{PASSWORD}@:587", "no host"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:abc", "port"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:99999", "port"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:0", "port"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?startls=1", "did you mean starttls"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:465?tls=1", "'tls'"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?starttls=maybe", "starttls='maybe'"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?starttls", "starttls=''"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?verify=no-thanks", "verify="),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?timeout=-5", "timeout='-5'"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?timeout=0", "timeout='0'"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?timeout=inf", "timeout='inf'"),
        (f"smtp://mailer:{PASSWORD}@mail.example.com:587?timeout=soon", "timeout='soon'"),
        # An unencoded / ? # in the password ends the host part: it must not show up as the
        # host, the port or an option either.
        ("smtp://mailer:S3cret/Passw0rd@mail.example.com:587", "percent-encode"),
        ("smtp://mailer:S3cret?Passw0rd@mail.example.com:587", "percent-encode"),
        ("smtp://mailer:S3cret#Passw0rd@mail.example.com:587", "percent-encode"),
        (f"smtp://mailer:{PASSWORD}", "port"),  # the host forgotten: the password reads as a port
        (f"mailer:{PASSWORD}@mail.example.com:587", "scheme"),
        ("smtp://[::1", "not a URL"),
    ],
)
def test_a_bad_smtp_url_is_refused_without_showing_its_password(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="SMTP_URL") as refused:
        Settings.from_env({"SMTP_URL": url})
    message = str(refused.value)
    assert says in message
    for secret in (PASSWORD, "S3cret", "Passw0rd"):
        assert secret not in message
    assert "e.g. smtp" in message


def test_an_unknown_smtp_option_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option 'startls'.*starttls, timeout, verify"):
        SmtpSettings.from_url("smtp://user:secret@mail.example.com:587?startls=1")


def test_a_refused_smtp_url_shows_the_user_and_host_with_the_password_masked() -> None:
    with pytest.raises(ConfigError, match=r"'smpt://mailer:\*\*\*@mail\.example\.com:587\?"):
        SmtpSettings.from_url(f"smpt://mailer:{PASSWORD}@mail.example.com:587?starttls=1")


@pytest.mark.parametrize(
    ("url", "read"),
    [
        ("smtp://127.0.0.1:2525", SmtpSettings()),
        (
            "smtp://mailer:p%2Fss%40w@mail.example.com:587?starttls=1&timeout=2.5&verify=0",
            SmtpSettings(
                host="mail.example.com",
                port=587,
                username="mailer",
                password="p/ss@w",
                start_tls=True,
                timeout=2.5,
                verify_certificates=False,
            ),
        ),
        ("smtps://mail.example.com", SmtpSettings(host="mail.example.com", port=465, use_tls=True)),
        ("smtp://[::1]:25?starttls=true", SmtpSettings(host="::1", port=25, start_tls=True)),
    ],
)
def test_a_good_smtp_url_is_read(url: str, read: SmtpSettings) -> None:
    assert SmtpSettings.from_url(url) == read


# The sender's identity in marketing mail (Japan's Act on Specified Electronic Mail, Article 4):
# each value is one footer line, so a line break would end it early or forge a line of its own.
@pytest.mark.parametrize(
    "name", ["NUDGE_SENDER_NAME", "NUDGE_SENDER_ADDRESS", "NUDGE_SENDER_CONTACT"]
)
@pytest.mark.parametrize(
    "breaking", ["\r\n", "\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
)
def test_a_sender_identity_value_is_refused_with_a_line_break_or_control_character(
    name: str, breaking: str
) -> None:
    value = f"03-1234-5678{breaking}配信停止：https://evil.example/"
    with pytest.raises(ConfigError, match=name) as refused:
        Settings.from_env({name: value})
    assert "\n" not in str(refused.value)
    assert "e.g." in str(refused.value)


@pytest.mark.parametrize(
    "contact",
    [
        "support@shop.example.jp",
        "03-1234-5678",
        "0120-123-456",
        "+81 3 1234 5678",
        "(03) 1234-5678",
        "０３－１２３４－５６７８（平日 10:00〜18:00）",  # full width, with opening hours
        "https://shop.example.jp/contact",
        "お問い合わせフォーム https://shop.example.jp/contact?from=mail",
        "support@shop.example.jp / 03-1234-5678",
    ],
)
def test_a_contact_holding_a_mail_address_phone_number_or_web_url_is_read(contact: str) -> None:
    assert Settings.from_env({"NUDGE_SENDER_CONTACT": f" {contact} "}).sender_contact == contact


@pytest.mark.parametrize(
    "contact",
    [
        "山田 太郎",  # a name
        "〒100-0005 東京都千代田区丸の内1-2-3",  # a postal address (its postal code is 7 digits)
        "yes",
        "support@shop",  # no domain
        "shop.example.jp/contact",  # no scheme
        "ftp://shop.example.jp/contact",
        "110",
    ],
)
def test_a_contact_with_no_mail_address_phone_number_or_web_url_is_refused(contact: str) -> None:
    with pytest.raises(ConfigError, match="NUDGE_SENDER_CONTACT") as refused:
        Settings.from_env({"NUDGE_SENDER_CONTACT": contact})
    assert "\n" not in str(refused.value)
    assert "e.g." in str(refused.value)


def test_the_sender_identity_is_read_trimmed_and_empty_when_unset_or_blank() -> None:
    read = Settings.from_env(
        {
            "NUDGE_SENDER_NAME": " 株式会社ナッジ ",
            "NUDGE_SENDER_ADDRESS": " 〒100-0005 東京都千代田区丸の内1-2-3 ナッジビル5F\n",
            "NUDGE_SENDER_CONTACT": "support@shop.example.jp",
        }
    )
    assert read.sender_name == "株式会社ナッジ"
    assert read.sender_address == "〒100-0005 東京都千代田区丸の内1-2-3 ナッジビル5F"
    assert read.sender_contact == "support@shop.example.jp"
    blank = Settings.from_env(
        {"NUDGE_SENDER_NAME": " ", "NUDGE_SENDER_ADDRESS": "", "NUDGE_SENDER_CONTACT": "  "}
    )
    assert (blank.sender_name, blank.sender_address, blank.sender_contact) == ("", "", "")
    # Empty name: the sender shows the shop name (the display name of NUDGE_MAIL_FROM).
    assert Settings.from_env({}).sender_name == ""


def test_smtps_with_starttls_is_refused_rather_than_half_read() -> None:
    """Implicit TLS and STARTTLS are alternatives; both at once was silently read as smtps."""
    with pytest.raises(ConfigError, match=r"SMTP_URL=.*smtps:// is already TLS") as refused:
        Settings.from_env({"SMTP_URL": "smtps://mailer:S3cretPassw0rd@mail.example.com?starttls=1"})
    assert "S3cret" not in str(refused.value)
    assert Settings.from_env({"SMTP_URL": "smtps://mail.example.com?starttls=0"}).smtp.use_tls
