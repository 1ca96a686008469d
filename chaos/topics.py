"""Publishing the chaos run's event log at a steady rate, pausable around a broker restart.

Reading topics back is `nudge.testkafka.read_topic`.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from nudge.produce import key_of


class Publisher:
    """Publishes the log at a steady rate, keyed like `nudge produce`; counts progress; can
    pause (the harness pauses it while it restarts the broker: apps' own retries are not ours)."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], rate: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.lines = lines
        self.rate = rate
        self.sent = 0
        self.running = asyncio.Event()
        self.running.set()
        self.done = asyncio.Event()
        self.quiet = asyncio.Event()  # set while paused with everything sent acknowledged

    @property
    def progress(self) -> float:
        return self.sent / max(1, len(self.lines))

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=5,
            acks="all",
            enable_idempotence=True,
            max_request_size=1 << 20,
            request_timeout_ms=120_000,
        )
        await producer.start()
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            paused_for = 0.0
            pending: list[asyncio.Future[object]] = []
            for line in self.lines:
                if not self.running.is_set():
                    await asyncio.gather(*pending)
                    pending.clear()
                    await producer.flush()
                    paused = loop.time()
                    self.quiet.set()
                    await self.running.wait()
                    self.quiet.clear()
                    paused_for += loop.time() - paused
                pending.append(await producer.send(self.topic, line, key=key_of(line)))
                self.sent += 1
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
                ahead = self.sent / self.rate - (loop.time() - started - paused_for)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.gather(*pending)
            await producer.flush()
        finally:
            await producer.stop()
            self.done.set()

    async def pause(self) -> None:
        """Stop sending and wait until everything sent so far is acknowledged."""
        self.running.clear()
        quiet = asyncio.ensure_future(self.quiet.wait())
        finished = asyncio.ensure_future(self.done.wait())
        await asyncio.wait((quiet, finished), return_when=asyncio.FIRST_COMPLETED)
        quiet.cancel()
        finished.cancel()

    def resume(self) -> None:
        self.running.set()
