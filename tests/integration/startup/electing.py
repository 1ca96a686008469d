"""A broker that is still electing group coordinators, as one process sees it.

For `seconds` after a process first asks for a group coordinator, every FindCoordinator answer
it gets says COORDINATOR_NOT_AVAILABLE (error 15): what a broker that has just started answers
while it creates `__consumer_offsets` and elects the coordinators (the first thing `make run`
meets). The shared test broker did that long ago and tests must not restart it, so the answer is
replayed at the one place every aiokafka client (a consumer, the admin client, Faust's) hears the
broker: `AIOKafkaClient.send`. The request still goes to the real broker, which serves
everything else.

In process: `monkeypatch.setattr(AIOKafkaClient, "send", Electing(2.0).around(send))`. In a
`nudge` child process: `child_env(...)` puts `electing_hook/sitecustomize.py` on its path.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.protocol.coordination import FindCoordinatorRequest

SECONDS_VARIABLE = "NUDGE_TEST_ELECTING_SECONDS"
RECORD_VARIABLE = "NUDGE_TEST_ELECTING_RECORD"
HOOK = Path(__file__).with_name("electing_hook")

Send = Callable[..., Awaitable[Any]]


@dataclass
class Electing:
    """The election window; `answered` counts the FindCoordinator answers it replaced."""

    seconds: float
    record: Path | None = None  # a line per replaced answer (the pid), for a parent process
    answered: int = 0
    first: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # Faust's consumer thread

    def electing(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if self.first is None:
                self.first = now
            return now - self.first < self.seconds

    def around(self, send: Send) -> Send:
        async def answer(client: Any, node_id: int, request: Any, **kwargs: Any) -> Any:
            response = await send(client, node_id, request, **kwargs)
            if not isinstance(request, FindCoordinatorRequest) or not self.electing():
                return response
            with self.lock:
                self.answered += 1
            if self.record is not None:
                with self.record.open("a") as out:
                    out.write(f"{os.getpid()}\n")
            replaced = copy.copy(response)
            replaced.error_code = GroupCoordinatorNotAvailableError.errno
            replaced.coordinator_id = -1
            return replaced

        return answer


def child_env(seconds: float, record: Path) -> dict[str, str]:
    """The environment that makes a `nudge` child meet an election of `seconds` (recorded in
    `record`): this directory's hook first on PYTHONPATH."""
    path = [str(HOOK), str(HOOK.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        "PYTHONPATH": os.pathsep.join(path),
        SECONDS_VARIABLE: str(seconds),
        RECORD_VARIABLE: str(record),
    }


def install_from_env() -> None:
    """Called by the hook at the child's start: replace `AIOKafkaClient.send` for the process."""
    electing = Electing(float(os.environ[SECONDS_VARIABLE]), Path(os.environ[RECORD_VARIABLE]))
    AIOKafkaClient.send = electing.around(AIOKafkaClient.send)  # type: ignore[method-assign]
