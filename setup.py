"""Build hook: compile the journey engine's hot modules to C extensions with mypyc.

`make install` (`uv pip install -e .`) and the Docker image (`pip install .`) run this through
pyproject's setuptools backend. Each module below gets a C extension next to its source, which
Python imports in preference to the `.py`; without the extensions the same source runs
interpreted, with the same results (docs/simulate.md: "Compiled engine"). NUDGE_COMPILE=0
skips compiling, e.g. where there is no C compiler.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = [
    "service/nudge/codec.py",
    *(
        f"service/nudge/journeys/{name}.py"
        for name in (
            "config",
            "draft",
            "engine",
            "facts",
            "firing",
            "ids",
            "localtime",
            "outcome",
            "policies",
            "replay",
            "report",
            "runs",
            "simulate",
            "state",
            "statecodec",
            "timing",
            "variables",
        )
    ),
]


def ext_modules() -> list[object]:
    if os.environ.get("NUDGE_COMPILE", "1") == "0":
        return []
    from mypyc.build import mypycify

    return list(mypycify(["--config-file", "pyproject.toml", *COMPILED], opt_level="3"))


setup(ext_modules=ext_modules())
