"""The faults: a seeded schedule (which fault at which share of the log) and the injector that
carries them out against the running stack, one after the other, recording when each happened.

A supervisor restarts a service that dies on its own (as an orchestrator would) and records that
as a fault too, so duplicates it causes are attributed instead of hidden.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.stack import Broker, RecordingSink, Stack
from chaos.topics import Publisher
from chaos.verdict import Fault


@dataclass(frozen=True, slots=True)
class Planned:
    kind: str  # kill_processor, kill_sender, smtp_down, smtp_flaky, broker_restart
    progress: float  # share of the log published before it starts


def schedule(
    *,
    seed: int,
    processor_kills: int,
    sender_kills: int,
    smtp_down: bool,
    smtp_flaky: bool,
    broker_restart: bool,
    after: float = 0.2,
    before: float = 0.9,
) -> list[Planned]:
    """The faults in a random order at random points in [after, before] of the log."""
    rng = random.Random(seed)  # noqa: S311 - fault injection, not security
    kinds = ["kill_processor"] * processor_kills + ["kill_sender"] * sender_kills
    kinds += ["smtp_down"] * smtp_down + ["smtp_flaky"] * smtp_flaky
    kinds += ["broker_restart"] * broker_restart
    rng.shuffle(kinds)
    points = sorted(rng.uniform(after, before) for _ in kinds)
    return [Planned(kind, round(p, 3)) for kind, p in zip(kinds, points, strict=True)]


@dataclass
class Settings:
    processors: tuple[str, ...] = ("processor",)  # the workers of the processor group
    smtp_down_seconds: float = 30.0
    flaky_seconds: float = 20.0
    flaky_451_ratio: float = 0.2
    flaky_421_ratio: float = 0.05


class Injector:
    """Runs the schedule against the stack; `faults` is the log the verdict reads."""

    def __init__(
        self,
        stack: Stack,
        sink: RecordingSink,
        publisher: Publisher,
        broker: Broker | None,
        settings: Settings,
        say: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.sink = sink
        self.publisher = publisher
        self.broker = broker
        self.settings = settings
        self.say = say
        self.faults: list[Fault] = []
        self.services = (*settings.processors, "sender")
        self.recovery: dict[str, list[float]] = {name: [] for name in self.services}
        self.locks = {name: asyncio.Lock() for name in self.services}
        self.kills = 0

    async def run(self, plan: list[Planned]) -> None:
        for planned in plan:
            # The share published is a counter, not an event: poll it.
            while self.publisher.progress < planned.progress:
                if self.publisher.done.is_set():
                    break
                await asyncio.sleep(0.1)
            self.say(f"fault {planned.kind} at {self.publisher.progress:.0%} of the log")
            await getattr(self, planned.kind)()

    async def _crash(self, name: str) -> None:
        async with self.locks[name]:
            at = time.time()
            self.stack[name].restart(signal.SIGKILL)
            took = await self.stack.wait_ready(name, 180)
            self.recovery[name].append(round(took, 2))
            self.faults.append(
                Fault(f"kill_{name}", at, time.time(), f"ready again in {took:.1f} s")
            )

    async def kill_processor(self) -> None:
        # With several workers, the kills take them in turn: each kill hands the victim's
        # partitions to the others, and its restart takes some back (two rebalances).
        workers = self.settings.processors
        victim = workers[self.kills % len(workers)]
        self.kills += 1
        await self._crash(victim)

    async def kill_sender(self) -> None:
        await self._crash("sender")

    async def smtp_down(self) -> None:
        at = time.time()
        await self.sink.down()
        await asyncio.sleep(self.settings.smtp_down_seconds)
        await self.sink.up()
        self.faults.append(Fault("smtp_down", at, time.time(), "listener closed, connections cut"))

    async def smtp_flaky(self) -> None:
        s = self.settings
        faults = self.sink.faults
        at = time.time()
        faults.fail_ratio, faults.drop_ratio = s.flaky_451_ratio, s.flaky_421_ratio
        deferred = self.sink.deferred
        await asyncio.sleep(s.flaky_seconds)
        faults.fail_ratio, faults.drop_ratio = 0.0, 0.0
        detail = (
            f"451 to {s.flaky_451_ratio:.0%}, 421+close to {s.flaky_421_ratio:.0%}: "
            f"{self.sink.deferred - deferred} refused"
        )
        self.faults.append(Fault("smtp_flaky", at, time.time(), detail))

    async def broker_restart(self) -> None:
        if self.broker is None:
            return
        await self.publisher.pause()
        at = time.time()
        await self.broker.stop()
        await self.broker.start()
        self.publisher.resume()
        self.faults.append(Fault("broker_restart", at, time.time(), "SIGTERM, then start"))

    async def supervise(self) -> None:
        """Restart a service that exited without being told to; record it as a fault."""
        while True:
            await asyncio.sleep(0.5)
            for name in self.services:
                lock = self.locks[name]
                if lock.locked():
                    continue
                async with lock:
                    code = self.stack.exited().get(name)
                    if code is None:
                        continue
                    at = time.time()
                    self.say(f"{name} exited on its own (code {code}); restarting it")
                    self.stack[name].start()
                    try:
                        took = await self.stack.wait_ready(name, 180)
                    except RuntimeError as err:
                        self.say(str(err)[-500:])
                        took = -1.0
                    detail = f"exit code {code}; ready again in {took:.1f} s"
                    self.faults.append(Fault(f"exit_{name}", at, time.time(), detail))
