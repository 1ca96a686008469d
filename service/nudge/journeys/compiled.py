"""Refuses to run a compiled module older than its source (imported first by the package).

`make install` compiles the engine's hot modules with mypyc (setup.py) into extensions next to
their sources, and Python imports an extension in preference to its `.py`: an edit to
`engine.py` after compiling would silently not run. This check turns that into an error at
import that says what to do. Installed packages (wheels, the Docker image) write the source and
the extension in the same second, so only a source edited after the build trips it.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Final

# A source this much newer than its extension was edited after the build (a wheel's files are
# written within milliseconds of each other).
TOLERANCE_S: Final = 2.0


def stale_modules(*folders: Path) -> list[Path]:
    """The sources in `folders` that changed after their compiled extension was built."""
    stale: list[Path] = []
    for folder in folders:
        for suffix in EXTENSION_SUFFIXES:
            for extension in folder.glob(f"*{suffix}"):
                source = extension.with_name(extension.name[: -len(suffix)] + ".py")
                if not source.exists():
                    continue
                if source.stat().st_mtime > extension.stat().st_mtime + TOLERANCE_S:
                    stale.append(source)
    return sorted(stale)


def check() -> None:
    here = Path(__file__).resolve().parent
    stale = stale_modules(here, here.parent)
    if stale:
        names = ", ".join(str(path) for path in stale)
        raise ImportError(
            f"{names} changed after it was compiled, and Python would run the old compiled "
            "module: run `make install` to compile it again (NUDGE_COMPILE=0 make install, or "
            "deleting the .so files next to it, runs the source instead)",
            name=__name__,  # how `nudge` tells this from any other ImportError (one line for it)
        )


check()
