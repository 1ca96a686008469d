"""The shipped templates are the template files: what the engine accepts is what the sender has."""

from __future__ import annotations

from pathlib import Path

from nudge.catalog import LOCALES, PARTS, shipped_templates
from nudge.journeys import BUILTIN_TEMPLATES
from nudge.sender.render import Renderer


def _write(root: Path, locale: str, name: str, parts: tuple[str, ...] = PARTS) -> None:
    (root / locale).mkdir(parents=True, exist_ok=True)
    for part in parts:
        (root / locale / f"{name}.{part}").write_text("x", encoding="utf-8")


def test_the_engine_knows_exactly_the_templates_the_sender_renders() -> None:
    assert BUILTIN_TEMPLATES == shipped_templates() == frozenset(Renderer().template_names())
    assert "order_confirmation" in BUILTIN_TEMPLATES


def test_a_template_is_shipped_only_with_every_part_in_every_locale(tmp_path: Path) -> None:
    for locale in LOCALES:
        _write(tmp_path, locale, "welcome")
        _write(tmp_path, locale, "_layout")  # layouts and macros are not templates
    _write(tmp_path, "ja", "ja_only")
    _write(tmp_path, "ja", "no_html", ("subject.txt", "txt"))
    _write(tmp_path, "en", "no_html")
    assert shipped_templates(tmp_path) == {"welcome"}
