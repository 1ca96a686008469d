"""The one rule for "an absolute http(s) URL that is safe to put in a mail": `web_url_problem`.

Three places apply it, each with its own error: the base URLs `NUDGE_SHOP_URL` and
`NUDGE_PUBLIC_URL` (refused at start), links that come from events (the `link_url` template
filter, dead-lettered `unsafe_url`) and the link service's redirect target (a 400). One rule means
a link the sender puts in a mail is never one the link service then refuses to follow.

A URL passes when
- it starts with `http://` or `https://`, in any case;
- its host is a domain name (an IDN too), a dotted IPv4 address or a bracketed IPv6 address,
  with an optional port from 1 to 65535;
- it names no user before the host: `https://shop.example@evil.example/` goes to `evil.example`,
  and a reader takes the part before the `@` for the site (a phishing trick);
- every character is printable and none is a space or a backslash: a control character (CR, LF,
  NUL, …) would break a header or the text part, an invisible one (a bidi override, a zero-width
  space, a soft hyphen) makes a link read differently from where it goes, and a backslash is a
  `/` to a browser but not to an RFC 3986 parser, the classic way to make the two disagree on
  the host.

Nothing is cleaned: a URL that breaks the rule is refused, and its source has to be fixed. Length
is not part of the rule: a click link's token bounds it (`link_too_long`, nudge.tokens).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Final

_SCHEME: Final = re.compile(r"https?://", re.IGNORECASE)
_AUTHORITY_END: Final = re.compile(r"[/?#]")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# A host name as it goes to DNS (after IDNA): letters, digits, `-`, `.` and the `_` some real
# subdomains carry; nothing a browser or a parser could read as part of something else.
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9._-]+")
# A browser reads a host whose last label is a number as an IPv4 address (WHATWG URL), so such a
# host must be a plain dotted-quad one: `2130706433` and `0x7f.1` are 127.0.0.1 in disguise.
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_MAX_HOST_NAME: Final = 253


def web_url_problem(url: str) -> str | None:
    """None if `url` is an absolute http(s) URL safe to put in a mail or a `Location` header;
    otherwise what is wrong with it, a phrase like "it has no host" for the caller's message."""
    if not url.isprintable() or " " in url or "\\" in url:
        return f"it holds {_describe(_first_unsafe_character(url))}"
    scheme = _SCHEME.match(url)
    if scheme is None:
        return "it does not start with http:// or https://"
    rest = url[scheme.end() :]
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    if "@" in authority:
        return "it has a user name before its host (`user@`), which a reader takes for the site"
    host, port = _split_port(authority)
    if not host:
        return "it has no host"
    if port is not None and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
        return f"its port {port!r} is not a number from 1 to 65535"
    if not _is_host(host):
        return f"its host {host!r} is not a domain name or an IP address"
    return None


def _first_unsafe_character(url: str) -> str:
    return next(char for char in url if char in " \\" or not char.isprintable())


def _describe(char: str) -> str:
    if char == " ":
        return "a space"
    if char == "\\":
        return "a backslash"
    return f"the control or invisible character U+{ord(char):04X}"


def _split_port(authority: str) -> tuple[str, str | None]:
    """(host, port) of `host[:port]`; the port is None without a `:` and "" after a bare one."""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return authority, None  # no host shape: `_is_host` refuses it
        after = authority[close + 1 :]
        if after and not after.startswith(":"):
            return authority, None
        return authority[: close + 1], after[1:] if after else None
    host, colon, port = authority.partition(":")
    return host, port if colon else None


def _is_host(host: str) -> bool:
    if host.startswith("["):
        literal = host[1:-1]
        # A zone id (`%25eth0`) names an interface of one machine: no link in a mail needs one.
        if not host.endswith("]") or "%" in literal:
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return True
    try:
        # Mapped as a browser maps it first, so a full-width `＠` or `／` is seen as the `@` or `/`
        # it becomes (NFKC, which also covers what IDNA 2003's Unicode 3.2 tables miss, such as
        # U+FE13 `︓`). IDNA also refuses empty labels (`shop..example`), labels over 63 octets.
        mapped = unicodedata.normalize("NFKC", host)
        name = mapped.encode("idna").decode("ascii").removesuffix(".")
    except UnicodeError:
        return False
    if not _HOST_NAME.fullmatch(name) or len(name) > _MAX_HOST_NAME:
        return False
    if _NUMERIC_LABEL.fullmatch(name.rpartition(".")[2]):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return False
    return True
