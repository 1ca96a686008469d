"""The URLs the sender puts in mail: each verifies for its own route, and links get rewritten."""

from __future__ import annotations

import re

import pytest

from nudge.links.keys import TokenKeys, verify_link
from nudge.links.urls import (
    CLICK,
    OPEN,
    UNSUBSCRIBE,
    MailRef,
    click_url,
    open_pixel_url,
    rewrite_links,
    unsubscribe_url,
)

from .conftest import NOW, SECRET

BASE = "https://links.shop.example"


def token_of(url: str) -> str:
    return re.split(r"token=|/o/|/c/", url)[-1].removesuffix(".gif")


@pytest.mark.parametrize(
    ("make", "purpose"),
    [
        (lambda ref: unsubscribe_url(ref, base_url=BASE, secret=SECRET, now=NOW), UNSUBSCRIBE),
        (lambda ref: open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW), OPEN),
        (
            lambda ref: click_url(ref, "https://x.example/", base_url=BASE, secret=SECRET, now=NOW),
            CLICK,
        ),
    ],
)
def test_each_url_carries_a_token_for_its_route(
    ref: MailRef, keys: TokenKeys, make: object, purpose: str
) -> None:
    """The sender's URLs verify on the route they point at and name the same mail."""
    url = make(ref)  # type: ignore[operator]
    assert url.startswith(BASE + "/")
    assert verify_link(token_of(url), purpose=purpose, keys=keys, now=NOW).ref == ref


def test_rewrite_points_links_at_the_click_redirect_with_the_original_inside(
    ref: MailRef, keys: TokenKeys
) -> None:
    """Each http(s) link becomes a /c/ URL whose token carries the unescaped original."""
    html = '<p><a href="https://shop.example/cart?a=1&amp;b=2" style="x">Cart</a></p>'
    rewritten = rewrite_links(html, ref, base_url=BASE, secret=SECRET, now=NOW)
    [href] = re.findall(r'href="([^"]+)"', rewritten)
    assert href.startswith(f"{BASE}/c/")
    link = verify_link(token_of(href), purpose=CLICK, keys=keys, now=NOW)
    assert link.url == "https://shop.example/cart?a=1&b=2"


def test_rewrite_leaves_the_unsubscribe_link_and_the_link_services_own_routes(
    ref: MailRef,
) -> None:
    """The unsubscribe link and pixel/click URLs are not wrapped again; other links on the
    link service's host are (a shop may serve both under one domain)."""
    unsubscribe = unsubscribe_url(ref, base_url=BASE, secret=SECRET, now=NOW)
    pixel = open_pixel_url(ref, base_url=BASE, secret=SECRET, now=NOW)
    html = (
        f'<a href="{unsubscribe}">u</a><a href="{pixel}">p</a>'
        f'<a href="{BASE}/cart">same host</a><a href="mailto:a@b.example">m</a>'
    )
    rewritten = rewrite_links(html, ref, base_url=BASE, secret=SECRET, now=NOW, skip=(unsubscribe,))
    hrefs = re.findall(r'href="([^"]+)"', rewritten)
    assert hrefs[0] == unsubscribe
    assert hrefs[1] == pixel
    assert hrefs[2].startswith(f"{BASE}/c/")
    assert hrefs[3] == "mailto:a@b.example"
