"""Nudge's own processes as children of a test or a chaos run: start, probe, signal, restart.

    services = Services(workdir, env={"KAFKA_BOOTSTRAP_SERVERS": ..., "NUDGE_TOPIC_PREFIX": ...})
    processor = services.start("processor", "--tick-interval", "0.2")   # `nudge processor ...`
    processor.wait_ready()                  # /readyz answers 200 (or ServiceError with its log)
    processor.metric("nudge_events_consumed_total")
    processor.restart(signal.SIGKILL)       # no drain, no commit; then the same command again
    services.stop_all()                     # SIGTERM every child, SIGKILL what lingers

One `Services` per test or run. Each child gets the environment of this process, then the shared
`services.env`, then its own port, state directory (`workdir/state/<name>`) and the `env` given
to `start`; its output goes to `workdir/logs/<name>.log` (appended across restarts), which every
error quotes. Ports are free loopback ports, chosen once per name (`services.port(name)` gives one
before the start, for URLs other services need). Children run in their own session, so a Ctrl-C
in the terminal reaches the harness, which stops them in order.

Readiness is the service's own `/readyz` (processor, sender, web) or, for `nudge smtp-sink`, an
accepted TCP connection. Waits poll a condition until a deadline; nothing sleeps a fixed time.
Shipped with the package (like `nudge.processor.testing`) so tests, `chaos/` and `bench/` import
it the same way without touching `sys.path`. Reading back what the services wrote to Kafka is
`nudge.testkafka`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from nudge.settings import Settings

NUDGE = str(Path(sys.executable).with_name("nudge"))
HOST = "127.0.0.1"
LOG_TAIL = 6000  # characters of a child's log quoted in errors

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A service did not become ready, exited, or a condition did not hold in time.

    The message names the service and quotes the tail of its log.
    """


@dataclass(frozen=True, slots=True)
class Kind:
    """How one `nudge` command is told its port, and whether it serves /readyz on it."""

    port_variable: str | None = None  # sets the HTTP port of /livez, /readyz, /metrics
    port_option: str | None = None  # or: the option naming the port it listens on (no HTTP)

    @property
    def http(self) -> bool:
        return self.port_variable is not None


KINDS: dict[str, Kind] = {
    "processor": Kind(port_variable="NUDGE_PROCESSOR_PORT"),
    "sender": Kind(port_variable="NUDGE_SENDER_PORT"),
    "web": Kind(port_variable="NUDGE_WEB_PORT"),
    "smtp-sink": Kind(port_option="--port"),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    failure: Callable[[], str],
    interval: float = 0.25,
) -> T:
    """Call `check` until it returns something other than None or False; return that.

    Raises `ServiceError(failure())` after `timeout` seconds. `check` may raise to stop early.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() >= deadline:
            raise ServiceError(failure())
        time.sleep(interval)


@dataclass(eq=False)
class Service:
    """One `nudge <command>` child process; `start()` again runs the same command anew."""

    name: str
    command: str
    args: tuple[str, ...]
    env: dict[str, str] = field(repr=False)  # the child's whole environment
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started_at: float = 0.0  # time.monotonic() of the last start
    stopping: bool = False  # stopped through this object: an exit then is not a crash

    @property
    def kind(self) -> Kind:
        return KINDS[self.command]

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def settings(self) -> Settings:
        """The settings the child read from its environment."""
        return Settings.from_env(self.env)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the last run; None while it runs or before the first start."""
        return None if self.process is None else self.process.poll()

    def start(self) -> Self:
        """Run the command (again); returns at once: `wait_ready()` waits for readiness."""
        if self.running:
            raise ServiceError(f"{self.name} is already running")
        option = self.kind.port_option
        args = [NUDGE, self.command, *self.args, *((option, str(self.port)) if option else ())]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(  # noqa: S603 (our own CLI, arguments from the caller)
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        self.started_at = time.monotonic()
        self.stopping = False
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send `sig` and wait for the exit (SIGKILL after `timeout` s); returns the exit code
        (`-signal.SIGKILL` after a kill), None when it was never started."""
        if self.process is None:
            return None
        self.stopping = True
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self._await_exit(timeout)

    def _await_exit(self, timeout: float) -> int | None:
        """Wait for the child to end; SIGKILL it after `timeout` s."""
        if self.process is None:
            return None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        return self.process.returncode

    def kill(self) -> int | None:
        """SIGKILL: no drain, no commit, no goodbye to the consumer group."""
        return self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> Self:
        """Stop with `sig` (SIGKILL: a crash), then start the same command; does not wait."""
        self.stop(sig)
        return self.start()

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """One GET on the service's HTTP port: (status, body); (0, "") when nothing answers."""
        try:
            with urllib.request.urlopen(f"{self.base_url}{path}", timeout=timeout) as response:  # noqa: S310 (loopback)
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")
        except (OSError, TimeoutError):
            return 0, ""

    def is_ready(self, path: str = "/readyz") -> bool:
        """One probe: `path` answers 200 (smtp-sink: its port accepts a connection)."""
        if not self.kind.http:
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return True
            except OSError:
                return False
        return self.get(path)[0] == 200

    def _probe(self, path: str, until: Callable[[str], bool] | None) -> float | None:
        """Seconds since the start once ready (and `until(body)` holds); raises if it exited."""
        if not self.running:
            raise ServiceError(
                f"{self.name} exited with code {self.returncode} while starting:\n{self.log()}"
            )
        if until is None:
            ready = self.is_ready(path)
        else:
            status, body = self.get(path)
            ready = status == 200 and until(body)
        return time.monotonic() - self.started_at if ready else None

    def _not_ready(self, path: str, timeout: float) -> str:
        return f"{self.name}: {path} not ready after {timeout:.0f} s:\n{self.log()}"

    def wait_ready(
        self,
        timeout: float = 90.0,
        *,
        path: str = "/readyz",
        until: Callable[[str], bool] | None = None,
    ) -> float:
        """Wait until `path` answers 200 and, if given, `until(body)` is true; returns the seconds
        since the last start. Raises ServiceError, quoting the log, if the child exits first."""
        return wait_until(
            lambda: self._probe(path, until),
            timeout=timeout,
            failure=lambda: self._not_ready(path, timeout),
        )

    async def wait_ready_async(
        self, *, path: str = "/readyz", until: Callable[[str], bool] | None = None
    ) -> float:
        """`wait_ready` without blocking the event loop (bound it with `asyncio.timeout`)."""
        while True:  # another process: there is nothing to await but its answer
            took = await asyncio.to_thread(self._probe, path, until)
            if took is not None:
                return took
            await asyncio.sleep(0.25)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called `name` on /metrics whose labels include `labels` (0 when
        there are none, or nothing answers)."""
        status, body = self.get("/metrics", timeout=5.0)
        if status != 200:
            return 0.0
        return sum(
            sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def wait_for_metric(
        self, name: str, minimum: float, timeout: float = 30.0, **labels: str
    ) -> float:
        """Wait until `metric(name, **labels)` reaches `minimum`; returns its value."""
        return wait_until(
            lambda: value if (value := self.metric(name, **labels)) >= minimum else None,
            timeout=timeout,
            failure=lambda: (
                f"{self.name}: {name}{labels or ''} = {self.metric(name, **labels)}, "
                f"not >= {minimum} after {timeout:.0f} s:\n{self.log()}"
            ),
        )

    def log(self, chars: int = LOG_TAIL) -> str:
        """The last `chars` characters of the child's output (all runs)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Services:
    """The processes one test or run started; `stop_all()` ends them all."""

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # shared by every child started later
    started: dict[str, Service] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def port(self, name: str) -> int:
        """The port of service `name`, chosen the first time it is asked for (also before its
        start, for the URLs other services are given)."""
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port(name)}"

    def start(
        self,
        name: str,
        *args: str,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Service:
        """Start `nudge <command> <args>` (command defaults to `name`) as service `name`; does not
        wait: `.wait_ready()` on the result does. `env` adds to (and wins over) `self.env`."""
        command = command or name
        if command not in KINDS:
            raise ServiceError(f"{command!r} is not a service: choose one of {', '.join(KINDS)}")
        previous = self.started.get(name)
        if previous is not None and previous.running:
            raise ServiceError(f"{name} is already running; use services[{name!r}].restart()")
        port = self.port(name)
        state_dir = self.workdir / "state" / name
        state_dir.parent.mkdir(parents=True, exist_ok=True)  # the processor makes only the last
        child_env = {**os.environ, **self.env, "NUDGE_STATE_DIR": str(state_dir)}
        if (variable := KINDS[command].port_variable) is not None:
            child_env[variable] = str(port)
        child_env.update(env or {})
        service = Service(
            name=name,
            command=command,
            args=args,
            env=child_env,
            port=port,
            log_path=self.workdir / "logs" / f"{name}.log",
        )
        self.started[name] = service
        return service.start()

    def __getitem__(self, name: str) -> Service:
        try:
            return self.started[name]
        except KeyError:
            known = ", ".join(self.started) or "none"
            raise KeyError(f"no service {name!r} was started (started: {known})") from None

    def exited(self) -> dict[str, int]:
        """Services whose process ended without being stopped through the harness (crashed or
        quit on their own), with their exit codes."""
        return {
            name: code
            for name, service in self.started.items()
            if not service.stopping and (code := service.returncode) is not None
        }

    def logs(self, chars: int = LOG_TAIL) -> str:
        """The tail of every service's log, each under its name: for failure messages."""
        return "\n".join(f"--- {name}\n{s.log(chars)}" for name, s in self.started.items())

    def stop_all(self, grace: float = 20.0) -> None:
        """SIGTERM every running child at once, wait up to `grace` s in all, SIGKILL the rest."""
        running = [s for s in self.started.values() if s.running]
        for service in running:
            service.stopping = True
            if service.process is not None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in running:
            service._await_exit(max(0.1, deadline - time.monotonic()))

    async def stop_all_async(self, grace: float = 20.0) -> None:
        """`stop_all` without blocking the event loop (a sender drains into an in-process sink)."""
        await asyncio.to_thread(self.stop_all, grace)
