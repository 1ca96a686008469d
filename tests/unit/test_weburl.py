"""The one rule for a safe absolute http(s) URL (nudge.weburl), as a table of URLs and verdicts.

The same rule guards NUDGE_SHOP_URL / NUDGE_PUBLIC_URL, links from events (`link_url`) and the
link service's redirect target; their own tests check each keeps its error style.
"""

from __future__ import annotations

import pytest

from nudge.weburl import web_url_problem

ACCEPTED = [
    ("https://shop.example.com", "a bare origin"),
    ("http://shop.example.com/cart", "plain http (a carrier's tracking page may still be one)"),
    ("HTTPS://Shop.Example.com/Cart", "the scheme and host in any case"),
    ("https://shop.example.com:8443/x", "a port"),
    ("http://127.0.0.1:8080", "a dotted IPv4 address"),
    ("http://[::1]:8080/links", "a bracketed IPv6 address"),
    ("https://shop.example.com./", "a fully qualified name with its trailing dot"),
    ("https://cdn_1.shop.example.com/", "an underscore, which real subdomains carry"),
    ("https://例え.jp/商品?q=テスト#ä", "an IDN host, non-ASCII path, query and fragment"),
    ("https://xn--r8jz45g.jp/", "an IDN host in its ASCII form"),
    ("https://ｓｈｏｐ．ｅｘａｍｐｌｅ/", "a full-width host, which maps to shop.example"),
    ("https://shop.example/login?next=%2Fcart&sig=q1w2%3D%3D#top", "an encoded query, a fragment"),
    ("https://shop.example/" + "a" * 5000, "a long path: the token bounds length (link_too_long)"),
]

REFUSED = [
    # not an absolute http(s) URL
    ("", "does not start with http:// or https://"),
    ("shop.example.com", "does not start with http:// or https://"),
    ("//shop.example.com/", "does not start with http:// or https://"),
    ("javascript:alert(1)", "does not start with http:// or https://"),
    ("data:text/html;base64,PHNjcmlwdD4=", "does not start with http:// or https://"),
    ("ftp://shop.example.com/", "does not start with http:// or https://"),
    ("https:/shop.example.com", "does not start with http:// or https://"),
    ("https://", "has no host"),
    ("https:///path", "has no host"),
    ("https://:443/", "has no host"),
    # a user name before the host: the reader sees `shop.example`, the browser goes to evil
    ("https://user@evil.example/", "user name"),
    ("https://user:password@evil.example/", "user name"),
    ("https://shop.example.com@evil.example/", "user name"),
    ("https://@evil.example/", "user name"),
    ("https://user＠evil.example/", "host"),  # a full-width @ is an @ once mapped
    # a space, backslash, control or invisible character anywhere
    (" https://shop.example/", "a space"),
    ("https://shop.example/ ", "a space"),
    ("https://shop.example/a b", "a space"),
    ("https://shop example/", "a space"),
    ("https://shop.example/\u3000", "U+3000"),  # ideographic space
    ("https://shop.example/\xa0", "U+00A0"),
    ("https://evil.example\\@shop.example/", "a backslash"),  # a browser reads `\` as `/`
    ("https://shop.example/a\\b", "a backslash"),
    ("https://shop.example/\r\nSet-Cookie: a=b", "U+000D"),
    ("https://shop.example/\n", "U+000A"),
    ("https://shop.example/\t", "U+0009"),
    ("https://shop.example/\x00", "U+0000"),
    ("https://shop.example/\x7f", "U+007F"),
    ("https://shop.example/\x85", "U+0085"),  # NEL, a C1 line break
    ("https://shop.example/\u2028", "U+2028"),
    ("https://shop.example/\u202etxt.exe", "U+202E"),  # a bidi override: reads reversed
    ("https://shop.example/\u200b", "U+200B"),  # zero-width space
    ("https://shop\xadexample.com/", "U+00AD"),  # soft hyphen: invisible, dropped by IDNA
    ("https://shop.example/\ufeff", "U+FEFF"),
    ("https://shop.example/#\ud800", "U+D800"),  # a lone surrogate has no UTF-8
    # a port that is not 1–65535
    ("https://shop.example:/", "port"),
    ("https://shop.example:0/", "port"),
    ("https://shop.example:65536/", "port"),
    ("https://shop.example:https/", "port"),
    # a host that is neither a domain name nor an IP address
    ("https://shop..example/", "host"),
    ("https://.shop.example/", "host"),
    ("https://" + "a" * 64 + ".example/", "host"),  # a label over 63 octets
    ("https://sh%6fp.example/", "host"),  # percent-encoded: read differently by each parser
    ("https://shop!.example/", "host"),
    ("https://shop.example\ufe13x/", "host"),  # a presentation-form colon, NFKC `:`
    ("https://2130706433/", "host"),  # 127.0.0.1 in disguise
    ("https://0x7f.1/", "host"),
    ("https://999.1.1.1/", "host"),
    ("https://[zz]/", "host"),
    ("https://[::1%25eth0]/", "host"),  # a zone id names one machine's interface
    ("https://[::1]x/", "host"),
]


@pytest.mark.parametrize(("url", "why"), ACCEPTED, ids=[why for _, why in ACCEPTED])
def test_a_safe_absolute_web_url_is_accepted(url: str, why: str) -> None:
    """Each of these is a link a real shop may send, and passes as it is."""
    assert web_url_problem(url) is None


@pytest.mark.parametrize(("url", "problem"), REFUSED)
def test_an_unsafe_or_broken_url_is_refused_saying_why(url: str, problem: str) -> None:
    """Each of these is refused, and the phrase for the caller's message says what is wrong."""
    found = web_url_problem(url)
    assert found is not None
    assert problem in found
