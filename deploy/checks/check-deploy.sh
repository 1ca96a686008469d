#!/usr/bin/env bash
# `make check-deploy`: every deployment artefact checked offline, without a Docker engine or a
# cluster. Installs its tools into .cache/tools on first use (deploy/checks/install-tools.sh).
#   Dockerfile          hadolint; its builder's pip steps run in a venv (check-image-install.sh)
#   docker-compose.yml  compose-check: the Compose Specification schema + references (compose-go)
#   Prometheus          promtool check config / check rules / test rules (alerts.test.yml)
#   Grafana dashboard   valid JSON; every PromQL expression parses (promtool)
#   Helm chart          helm lint; helm template | kubeconform -strict, per Kubernetes version,
#                       with default values and with every option on (helm/nudge/ci/*-values.yaml);
#                       the journeys file its ConfigMap carries passes `nudge validate`
#   Contract            chart (every ci values file) and compose against the code: the variables
#                       it reads, the routes it serves, the sender's drain (check-contract.py)
# Prints one line per check and the output of failed ones; exits non-zero if any failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
"$repo/deploy/checks/install-tools.sh"
bin=$repo/.cache/tools/bin
k8s_versions=${NUDGE_K8S_VERSIONS:-"1.30.0 1.37.0"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

check() {  # check NAME COMMAND...: run quietly, show the output only when it fails
  local name=$1; shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1)); printf '  ok    %s\n' "$name"
  else
    failed=$((failed + 1)); printf '  FAIL  %s\n' "$name"; sed 's/^/        /' "$work/out"
  fi
}

helm_quiet() {  # helm warns on every run that the chart's files/ are symlinks; that is on purpose
  "$bin/helm" "$@" 2> >(grep -v 'found symbolic link in path' >&2)
}

dashboard_queries() {  # every PromQL expression of the dashboard, as a rules file promtool parses
  "$(command -v "$repo/.venv/bin/python" || echo python3)" - "$1" >"$work/dashboard-rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for panel in panels:
        walk(panel.get("panels", []))
        exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
walk(dashboard["panels"])
print("groups:\n  - name: dashboard\n    rules:")
for i, expr in enumerate(exprs):
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    print(f"      - record: dashboard:query{i}\n        expr: {json.dumps(expr)}")
PY
  "$bin/promtool" check rules "$work/dashboard-rules.yml"
}

kube_validate() {  # kube_validate VERSION VALUES...: render the chart and validate it strictly
  local version=$1; shift
  local args=()
  for values in "$@"; do args+=(--values "$values"); done
  helm_quiet template nudge helm/nudge --kube-version "$version" "${args[@]}" >"$work/rendered.yaml"
  "$bin/kubeconform" -strict -summary -kubernetes-version "$version" \
    -schema-location "$repo/.cache/tools/k8s-schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$repo/deploy/checks/crd-schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$work/rendered.yaml"
}

chart_journeys() {  # the journeys file the chart's ConfigMap carries, through `nudge validate`
  helm_quiet template nudge helm/nudge --kube-version 1.30.0 --show-only templates/configmap-journeys.yaml \
    >"$work/configmap.yaml"
  "$(command -v "$repo/.venv/bin/python" || echo python3)" - "$work/configmap.yaml" \
    >"$work/journeys.yaml" <<'PY'
import sys, yaml
print(yaml.safe_load(open(sys.argv[1]))["data"]["journeys.yaml"])
PY
  local nudge=$repo/.venv/bin/nudge
  [[ -x $nudge ]] || nudge=$(echo "$repo"/.cache/tools/image-venv-*/bin/nudge)
  "$nudge" validate --quiet "$work/journeys.yaml"
}

contract() {  # the rendered chart and the compose file against what the code reads and serves
  local rendered=() i=0
  for values in "" helm/nudge/ci/*-values.yaml; do
    i=$((i + 1))
    helm_quiet template nudge helm/nudge --kube-version 1.30.0 ${values:+--values "$values"} \
      >"$work/contract-$i.yaml"
    rendered+=("$work/contract-$i.yaml")
  done
  PYTHONPATH="$repo/service" "$(command -v "$repo/.venv/bin/python" || echo python3)" \
    deploy/checks/check-contract.py --compose deploy/docker-compose.yml \
    --prometheus deploy/prometheus/prometheus.yml "${rendered[@]}"
}

echo "check-deploy:"
check "hadolint deploy/Dockerfile" "$bin/hadolint" deploy/Dockerfile
check "Dockerfile builder steps in a venv (lock → wheels, package data)" \
  deploy/checks/check-image-install.sh
check "compose-check deploy/docker-compose.yml" "$bin/compose-check" deploy/docker-compose.yml
check "promtool check config deploy/prometheus/prometheus.yml" \
  "$bin/promtool" check config deploy/prometheus/prometheus.yml
check "promtool check rules deploy/prometheus/alerts.yml" \
  "$bin/promtool" check rules deploy/prometheus/alerts.yml
check "promtool test rules deploy/prometheus/alerts.test.yml" \
  bash -c "cd deploy/prometheus && '$bin/promtool' test rules alerts.test.yml"
check "grafana dashboard: JSON and PromQL" dashboard_queries deploy/grafana/dashboards/nudge.json
check "helm lint helm/nudge" helm_quiet lint --strict helm/nudge
for values in helm/nudge/ci/*-values.yaml; do
  check "helm lint helm/nudge -f $values" helm_quiet lint --strict helm/nudge --values "$values"
done
check "helm chart journeys ConfigMap: nudge validate" chart_journeys
for version in $k8s_versions; do
  check "helm template | kubeconform -strict (Kubernetes $version, default values)" \
    kube_validate "$version"
  for values in helm/nudge/ci/*-values.yaml; do
    check "helm template | kubeconform -strict (Kubernetes $version, $(basename "$values"))" \
      kube_validate "$version" "$values"
  done
done
check "chart and compose match the code (env, routes, probes, state, drain, scaling)" contract
echo "check-deploy: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
