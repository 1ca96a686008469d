"""The mail templates Nudge ships: the files in `nudge/templates/` are the one list of them.

The sender renders from these files and the journey loader accepts their names in a journeys
file, so a template added here (a subject, a text and an HTML part in every locale) is known to
both, and one missing a part in one locale is known to neither. This module only lists files; it
imports neither Jinja nor the sender, so the engine may use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

TEMPLATE_ROOT: Final = Path(__file__).resolve().parent / "templates"
LOCALES: Final = ("ja", "en")
PARTS: Final = ("subject.txt", "txt", "html")


def shipped_templates(root: Path = TEMPLATE_ROOT) -> frozenset[str]:
    """Names with every part in every locale (files starting with `_` are layouts and macros)."""
    complete: set[str] | None = None
    for locale in LOCALES:
        folder = root / locale
        files = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
        names = {
            name.removesuffix(".subject.txt")
            for name in files
            if name.endswith(".subject.txt") and not name.startswith("_")
        }
        found = {name for name in names if all(f"{name}.{part}" in files for part in PARTS)}
        complete = found if complete is None else complete & found
    return frozenset(complete or ())
