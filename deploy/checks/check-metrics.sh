#!/usr/bin/env bash
# Scrape live Nudge processes and check what they expose:
#   deploy/checks/check-metrics.sh http://127.0.0.1:6066/metrics http://127.0.0.1:9465/metrics
# For each URL: the scrape answers 200; `promtool check metrics` reports nothing (naming, units,
# _total, help text); every family is Nudge's own (nudge_*) or the client library's process and
# runtime ones (python_*, process_*) — Faust's sensor (milliseconds, no prefix) must not leak.
# Extra allowed prefixes: NUDGE_METRICS_ALLOWED_PREFIXES="foo_ bar_". Installs promtool if needed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $# -eq 0 ]]; then
  echo "usage: $0 URL..." >&2
  exit 2
fi
promtool=$(command -v promtool || true)
if [[ -z $promtool ]]; then
  "$repo/deploy/checks/install-tools.sh" promtool
  promtool=$repo/.cache/tools/bin/promtool
fi
allowed="nudge_ python_ process_ ${NUDGE_METRICS_ALLOWED_PREFIXES:-}"
body=$(mktemp)
trap 'rm -f "$body"' EXIT
status=0
for url in "$@"; do
  if ! python3 - "$url" "$body" <<'PY'
import sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=10) as answer:
        open(out, "wb").write(answer.read())
except OSError as err:
    sys.exit(f"check-metrics: {url}: {err}")
PY
  then
    status=1
    continue
  fi
  problems=""
  if ! lint=$("$promtool" check metrics <"$body" 2>&1); then
    problems+="promtool check metrics:"$'\n'"$lint"$'\n'
  fi
  pattern="^($(tr ' ' '\n' <<<"$allowed" | grep -v '^$' | paste -sd'|'))"
  foreign=$(grep -E '^# TYPE ' "$body" | awk '{print $3}' | grep -Ev "$pattern" || true)
  if [[ -n $foreign ]]; then
    problems+="families outside the allowed prefixes ($allowed):"$'\n'"$foreign"$'\n'
  fi
  families=$(grep -c '^# TYPE nudge_' "$body" || true)
  if [[ $families -eq 0 ]]; then
    problems+="no nudge_* family at all: is this a Nudge process?"$'\n'
  fi
  if [[ -n $problems ]]; then
    status=1
    printf 'check-metrics: FAIL %s\n' "$url"
    printf '%s' "$problems" | sed 's/^/  /'
  else
    printf 'check-metrics: ok   %s (%s nudge_* families)\n' "$url" "$families"
  fi
done
exit $status
