"""Check that the deployment artefacts match what the code reads, serves and needs.

    PYTHONPATH=service python check-contract.py --compose deploy/docker-compose.yml \
        --prometheus deploy/prometheus/prometheus.yml RENDERED_CHART.yaml...

`helm lint` and kubeconform check that the chart is valid Kubernetes; this checks that it runs
*Nudge* correctly, and the compose file too. The facts come from the code, not from a copy:
- the environment variables `Settings.from_env` reads (it is called with a recording mapping):
  a variable set anywhere else is a typo or a leftover the code ignores;
- the routes each service serves (the literal paths its HTTP server registers): a probe, a
  healthcheck or an Ingress path must name one;
- the sender's drain at SIGTERM (`DRAIN_TIMEOUT`): a shorter grace period kills it mid-drain, and
  the mail whose SMTP reply was not yet recorded is sent again by the next sender.
What each service must be told in production (NEEDS) is the one table kept here, from
docs/configuration.md: without these the code falls back to laptop defaults (localhost Kafka,
example.com links, a random link key).
Prints every violation and exits 1 if there is one.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nudge.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "service" / "nudge"

# The HTTP port variable of each service, and the variables it must be given in production.
PORT_VARIABLE = {
    "processor": "NUDGE_PROCESSOR_PORT",
    "sender": "NUDGE_SENDER_PORT",
    "web": "NUDGE_WEB_PORT",
}
KAFKA = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "NUDGE_TOPIC_PREFIX",
    "NUDGE_TOPIC_PARTITIONS",
    "NUDGE_REPLICATION_FACTOR",
}
NEEDS = {
    "processor": KAFKA | {"NUDGE_STATE_DIR", "NUDGE_PROCESSOR_PORT"},
    "sender": KAFKA
    | {
        "SMTP_URL",
        "NUDGE_MAIL_FROM",
        "NUDGE_PUBLIC_URL",
        "NUDGE_SHOP_URL",
        # Shown in marketing mail: Japan's Act on Specified Electronic Mail requires them.
        "NUDGE_SENDER_NAME",
        "NUDGE_SENDER_ADDRESS",
        "NUDGE_SENDER_CONTACT",
        "NUDGE_TOKEN_SECRET",
        "NUDGE_SENDER_PORT",
    },
    "web": KAFKA | {"NUDGE_TOKEN_SECRET", "NUDGE_TOKEN_SECRET_PREVIOUS", "NUDGE_WEB_PORT"},
}
# The option that makes each service's HTTP server listen beyond loopback (its default).
HOST_OPTION = {"processor": "--web-host", "sender": "--host", "web": "--host"}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container's HTTP server must bind, checked for
# The files that register each service's HTTP routes.
ROUTE_SOURCES = {
    "processor": SERVICE / "processor" / "web.py",
    "sender": SERVICE / "sender" / "cli.py",
    "web": SERVICE / "links" / "routes.py",
}
# Time after the drain to commit offsets, leave the group and flush the producer.
SENDER_CLOSE_MARGIN = 10.0
INTERNAL_ROUTES = ("/metrics", "/livez", "/readyz")


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_read() -> set[str]:
    """Every environment variable `Settings.from_env` looks at."""
    recorder = _Recorder()
    Settings.from_env(recorder)
    return recorder.names


def routes_served(component: str) -> set[str]:
    """The paths a service's HTTP server registers (`add_get("/x")`, `add_resource("/x")`,
    `web.get("/x")`), each up to its first variable part: `/c/{token}` reads `/c/`."""
    source = ROUTE_SOURCES[component].read_text()
    pattern = r"""(?:add_get|add_resource|web\.get)\(\s*r?["'](/[A-Za-z0-9_./-]*)"""
    return set(re.findall(pattern, source))


def drain_timeout() -> float:
    """`DRAIN_TIMEOUT` of service/nudge/sender/service.py, read without importing the sender."""
    tree = ast.parse((SERVICE / "sender" / "service.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = any(isinstance(t, ast.Name) and t.id == "DRAIN_TIMEOUT" for t in targets)
            if named and node.value is not None:
                return float(ast.literal_eval(node.value))
    raise SystemExit("check-contract: DRAIN_TIMEOUT not found in sender/service.py")


def seconds(text: Any) -> float:
    """A compose duration (`90s`, `1m30s`) or a number of seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(text))
    return sum(float(n) * units[u] for n, u in parts)


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def ingress_routes(path: str, path_type: str, route: str) -> bool:
    """Whether an Ingress path sends requests for `route` to the backend."""
    if path_type == "Exact":
        return path == route
    return under(route, path.rstrip("/") or "/") or path in ("", "/")


class Checker:
    """Collects every place where an artefact contradicts the code."""

    def __init__(self) -> None:
        self.read = variables_read()
        self.drain = drain_timeout()
        self.problems: list[str] = []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def environment(self, where: str, component: str, names: set[str]) -> None:
        for name in sorted(names - self.read):
            self.problem(where, f"sets {name}, which Nudge never reads (nudge/settings.py)")
        for name in sorted(NEEDS[component] - names):
            self.problem(where, f"does not set {name}, which the {component} needs")

    def listens_beyond_loopback(self, where: str, component: str, args: list[str]) -> None:
        option = HOST_OPTION[component]
        if option not in args or args[args.index(option) + 1 :][:1] != [ALL_INTERFACES]:
            self.problem(where, f"no `{option} 0.0.0.0`: the HTTP server listens on 127.0.0.1")

    def route(self, where: str, component: str, path: str) -> None:
        if path.split("?")[0] not in routes_served(component):
            self.problem(where, f"{path} is not a route the {component} serves")

    def sender_grace(self, where: str, grace: float) -> None:
        if grace < self.drain + SENDER_CLOSE_MARGIN:
            self.problem(
                where,
                f"stop grace {grace:g}s < the sender's drain ({self.drain:g}s, DRAIN_TIMEOUT) + "
                f"{SENDER_CLOSE_MARGIN:g}s to commit and flush: a stop kills it mid-drain and "
                "mail whose SMTP reply was not yet recorded is sent again",
            )

    # The chart ---------------------------------------------------------------------------
    def chart(self, path: Path) -> None:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for document in documents:
            by_kind.setdefault(document["kind"], []).append(document)
        workloads = {
            d["metadata"]["name"]: d
            for d in documents
            if d["kind"] in ("StatefulSet", "Deployment")
        }
        partitions: dict[str, int] = {}
        web_args: list[str] = []
        for name, workload in workloads.items():
            pod = workload["spec"]["template"]["spec"]
            for container in pod["containers"]:
                component = container["name"]
                if component not in NEEDS:
                    continue
                where = f"{path.name}: {workload['kind']} {name}, container {component}"
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                self.environment(where, component, set(env))
                args = [str(a) for a in container.get("args", [])]
                self.listens_beyond_loopback(where, component, args)
                if component == "web":
                    web_args = args
                partitions[name] = int(env.get("NUDGE_TOPIC_PARTITIONS") or 0)
                self.pod_http(where, component, container, env)
                if component == "processor":
                    self.processor_state(where, workload, container, env)
                if component == "sender":
                    grace = pod.get("terminationGracePeriodSeconds", 30)
                    self.sender_grace(where, float(grace))
        self.scalers(path.name, by_kind, workloads, partitions)
        for ingress in by_kind.get("Ingress", []):
            self.ingress(path.name, ingress, web_args)
        for monitor in by_kind.get("ServiceMonitor", []):
            for endpoint in monitor["spec"]["endpoints"]:
                if endpoint.get("honorLabels") is not True:
                    self.problem(
                        f"{path.name}: ServiceMonitor {monitor['metadata']['name']}",
                        "no honorLabels: the operator's `service` target label would rename "
                        "Nudge's own `service` label (processor, sender, web) to exported_service",
                    )

    def pod_http(
        self, where: str, component: str, container: dict[str, Any], env: dict[str, Any]
    ) -> None:
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        wanted = env.get(PORT_VARIABLE[component])
        if wanted is None or "http" not in ports or int(wanted) != ports["http"]:
            self.problem(
                where,
                f"containerPort http={ports.get('http')} is not "
                f"{PORT_VARIABLE[component]}={wanted}, where the {component} listens",
            )
        expected = {
            "startupProbe": "/livez",
            "livenessProbe": "/livez",
            "readinessProbe": "/readyz",
        }
        for probe, route in expected.items():
            if probe not in container:
                continue
            get = container[probe].get("httpGet", {})
            if get.get("path") != route:
                self.problem(where, f"{probe} asks {get.get('path')}, not {route}")
            self.route(where, component, str(get.get("path")))
            if get.get("port") not in ("http", ports.get("http")):
                self.problem(where, f"{probe} port {get.get('port')} is not the HTTP port")

    def processor_state(
        self,
        where: str,
        workload: dict[str, Any],
        container: dict[str, Any],
        env: dict[str, Any],
    ) -> None:
        claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
        state_dir = str(env.get("NUDGE_STATE_DIR"))
        persistent = [
            m["mountPath"]
            for m in container.get("volumeMounts", [])
            if m["name"] in claims and under(state_dir, m["mountPath"])
        ]
        if workload["kind"] != "StatefulSet" or not persistent:
            self.problem(
                where,
                f"NUDGE_STATE_DIR={state_dir} is not on a volume claim of a StatefulSet: every "
                "restart would restore the tables from the changelog topics",
            )

    def scalers(
        self,
        where: str,
        by_kind: dict[str, list[dict[str, Any]]],
        workloads: dict[str, dict[str, Any]],
        partitions: dict[str, int],
    ) -> None:
        for scaler in by_kind.get("HorizontalPodAutoscaler", []) + by_kind.get("ScaledObject", []):
            spec = scaler["spec"]
            target = spec["scaleTargetRef"]["name"]
            label = f"{where}: {scaler['kind']} {scaler['metadata']['name']}"
            workload = workloads.get(target)
            if workload is None:
                self.problem(label, f"scales {target}, which the chart does not render")
                continue
            if "replicas" in workload["spec"]:
                self.problem(
                    label,
                    f"{target} sets spec.replicas: every `helm upgrade` resets the count the "
                    "autoscaler chose",
                )
            maximum = spec.get("maxReplicas", spec.get("maxReplicaCount"))
            component = workload["spec"]["template"]["metadata"]["labels"].get(
                "app.kubernetes.io/component"
            )
            if component in ("processor", "sender") and maximum > partitions.get(target, 0):
                self.problem(
                    label,
                    f"up to {maximum} replicas of {target} on {partitions.get(target)} partitions: "
                    "the extra consumers get no partition",
                )
            if scaler["kind"] == "ScaledObject" and spec.get("minReplicaCount", 0) > 0:
                behavior = (
                    spec.get("advanced", {})
                    .get("horizontalPodAutoscalerConfig", {})
                    .get("behavior")
                )
                window = (behavior or {}).get("scaleDown", {}).get("stabilizationWindowSeconds")
                if "cooldownPeriod" in spec and window != spec["cooldownPeriod"]:
                    self.problem(
                        label,
                        "cooldownPeriod only acts when scaling to zero, and minReplicaCount > 0: "
                        "the cooldown must be the HPA's scaleDown stabilizationWindowSeconds",
                    )

    def ingress(self, where: str, ingress: dict[str, Any], web_args: list[str]) -> None:
        label = f"{where}: Ingress {ingress['metadata']['name']}"
        for rule in ingress["spec"].get("rules", []):
            for entry in rule.get("http", {}).get("paths", []):
                path, path_type = entry.get("path", "/"), entry.get("pathType", "Prefix")
                for route in INTERNAL_ROUTES:
                    if ingress_routes(path, path_type, route):
                        self.problem(label, f"path {path} ({path_type}) makes {route} public")
                if not any(ingress_routes(path, path_type, r) for r in routes_served("web")):
                    self.problem(label, f"path {path} ({path_type}) reaches no route of nudge web")
        rate_off = "--per-client-rate=0" in web_args or any(
            a == "--per-client-rate" and b == "0" for a, b in itertools.pairwise(web_args)
        )
        if "--trusted-proxy" not in web_args and not rate_off:
            self.problem(
                label,
                "the link service gets no --trusted-proxy: behind the ingress every user shares "
                "one per-client rate limit bucket",
            )

    # Compose -----------------------------------------------------------------------------
    def compose(self, path: Path, prometheus: Path | None) -> None:
        services = yaml.safe_load(path.read_text())["services"]
        ports: dict[str, str] = {}
        for name, service in services.items():
            image = str(service.get("image", ""))
            if "nudge" not in image:
                continue
            where = f"{path.name}: service {name}"
            environment = service.get("environment") or {}
            if isinstance(environment, list):  # the `- NAME=value` form
                environment = dict(item.partition("=")[::2] for item in environment)
            env = {k: str(v) for k, v in environment.items()}
            for variable in sorted(set(env) - self.read):
                self.problem(where, f"sets {variable}, which Nudge never reads (nudge/settings.py)")
            if name not in NEEDS:
                continue
            self.environment(where, name, set(env))
            self.listens_beyond_loopback(where, name, [str(a) for a in service.get("command", [])])
            ports[name] = env.get(PORT_VARIABLE[name], "")
            test = " ".join(map(str, service.get("healthcheck", {}).get("test", [])))
            for port, route in re.findall(r"127\.0\.0\.1:(\d+)(/[A-Za-z0-9_/-]*)", test):
                if port != ports[name]:
                    self.problem(
                        where,
                        f"healthcheck asks port {port}, the service listens on "
                        f"{PORT_VARIABLE[name]}={ports[name]}",
                    )
                self.route(where, name, route)
            if name == "processor":
                state_dir = env.get("NUDGE_STATE_DIR", "")
                mounts = [str(v).split(":")[1] for v in service.get("volumes", []) if ":" in str(v)]
                if not any(under(state_dir, m) for m in mounts):
                    self.problem(where, f"NUDGE_STATE_DIR={state_dir} is not on a volume")
            if name == "sender":
                self.sender_grace(where, seconds(service.get("stop_grace_period", "10s")))
        if prometheus is not None:
            config = yaml.safe_load(prometheus.read_text())
            for job in config.get("scrape_configs", []):
                for static in job.get("static_configs", []):
                    for target in static.get("targets", []):
                        host, _, port = str(target).partition(":")
                        if host in ports and port != ports[host]:
                            self.problem(
                                f"{prometheus.name}: job {job['job_name']}",
                                f"scrapes {target}, but {host} listens on "
                                f"{PORT_VARIABLE[host]}={ports[host]}",
                            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compose", type=Path)
    parser.add_argument("--prometheus", type=Path)
    parser.add_argument("charts", nargs="*", type=Path, help="rendered chart manifests")
    args = parser.parse_args(argv)
    checker = Checker()
    for chart in args.charts:
        checker.chart(chart)
    if args.compose is not None:
        checker.compose(args.compose, args.prometheus)
    for problem in checker.problems:
        print(problem)
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
