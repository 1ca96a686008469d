"""The image's build context: every file the Dockerfile copies is in it, and no host build is."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
IGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"


def _rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per line, Docker's way: the last rule matching a path decides, and a
    rule matching a folder decides for everything in it."""
    rules = []
    for line in IGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        glob = line.lstrip("!").strip("/")
        regex = "".join(
            ".*"
            if part == "**"
            else "[^/]*"
            if part == "*"
            else "[^/]"
            if part == "?"
            else re.escape(part)
            for part in re.split(r"(\*\*|\*|\?)", glob)
        )
        rules.append((excludes, re.compile(regex)))
    return rules


def _in_context(path: str) -> bool:
    parts = path.split("/")
    included = True
    for excludes, pattern in _rules():
        if any(pattern.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            included = not excludes
    return included


def _copied_sources() -> list[str]:
    sources = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources.extend(w for w in words[1:-1] if not w.startswith("--"))
    return sources


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    sources = _copied_sources()
    assert "setup.py" in sources
    assert "service" in sources
    assert [source for source in sources if not _in_context(source)] == []


def test_the_hosts_compiled_modules_and_caches_stay_out_of_the_image() -> None:
    assert not _in_context("service/nudge/journeys/engine.cpython-311-x86_64-linux-gnu.so")
    assert not _in_context("service/af3a94ea39c69e702d31__mypyc.cpython-311-x86_64-linux-gnu.so")
    assert not _in_context("service/nudge/__pycache__/cli.cpython-311.pyc")
    assert _in_context("service/nudge/journeys/engine.py")
    assert not _in_context("tests/unit/test_docker_context.py")
