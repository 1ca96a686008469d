#!/usr/bin/env bash
# The Python half of deploy/Dockerfile's builder stage, run without Docker: a fresh virtualenv,
# pyproject's runtime dependencies constrained by requirements.lock (binary wheels only), then
# Nudge itself, non-editable. Checks that the lock resolves to wheels for every runtime
# dependency, that the installed package carries every data file (journeys.yaml, templates,
# schemas) and that `nudge --help` and `nudge validate` (the shipped journeys) run from it.
# Keep the two pip commands in step with deploy/Dockerfile. Cached in .cache/tools by content.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
deps_key=$(cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
venv=$repo/.cache/tools/image-venv-$deps_key
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ ! -x $venv/bin/nudge-deps-ok ]]; then
  rm -rf "$repo"/.cache/tools/image-venv-*
  python3 -m venv "$venv"
  python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    >"$venv/runtime.txt"
  "$venv/bin/pip" install -q --only-binary=:all: --constraint requirements.lock \
    --requirement "$venv/runtime.txt"
  printf '#!/bin/sh\n' >"$venv/bin/nudge-deps-ok" && chmod +x "$venv/bin/nudge-deps-ok"
fi
code_key=$(find service -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.so' -print0 \
  | sort -z | xargs -0 cat README.md pyproject.toml setup.py | cksum | cut -d' ' -f1)
if [[ ! -f $venv/.code-$code_key ]]; then
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  cp -r pyproject.toml README.md setup.py service "$build"/
  find "$build/service" -name '*.so' -delete  # `make install`'s compiled modules: built afresh
  "$venv/bin/pip" install -q --no-deps --force-reinstall "$build"
  rm -f "$venv"/.code-* && touch "$venv/.code-$code_key"
fi
"$venv/bin/python" - <<'PY'
import sys
from importlib.resources import files
from pathlib import Path

source = Path("service/nudge")
installed = Path(str(files("nudge")))
missing = [
    str(path.relative_to(source))
    for path in source.rglob("*")
    if path.is_file() and "__pycache__" not in path.parts
    and path.suffix not in (".py", ".pyc", ".so")  # .so: the extensions setup.py compiles
    and not (installed / path.relative_to(source)).is_file()
]
if missing:
    sys.exit(f"files in service/nudge missing from the installed package: {missing} "
             "(add them to [tool.setuptools.package-data] in pyproject.toml)")
PY
"$venv/bin/nudge" --help >/dev/null
"$venv/bin/nudge" validate --quiet
"$venv/bin/python" -c 'import sys, nudge.journeys.state as s; sys.exit(0 if s.NATIVE else
    "the image install did not compile the journey engine (setup.py, mypyc)")'
echo "image install: runtime dependencies from the lock, package data complete, nudge runs"
