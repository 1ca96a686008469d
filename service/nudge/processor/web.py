"""The processor's small HTTP server: `/livez`, `/readyz` and `/metrics` (Prometheus).

A plain aiohttp server rather than Faust's web: Faust's serves its own pages and sensor on the same
port, while ours exposes only `nudge.metrics` (the prometheus_client registry) and answers
`/livez` from the first second, before the consumer has joined its group (503 only when a table
recovery has stalled, recovery_watch.py). `/readyz` is 200 only once the tables are recovered, no
rebalance is running and every assigned due index is loaded.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from mode import Service

from nudge import metrics


def make_web_app(
    ready: Callable[[], bool],
    detail: Callable[[], str] = lambda: "",
    alive: Callable[[], bool] = lambda: True,
) -> web.Application:
    """`detail` is appended to the /readyz answer (the processor lists its partitions); `alive`
    false makes /livez 503 (a stalled table recovery: restart the worker)."""

    async def livez(request: web.Request) -> web.Response:
        if alive():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="table recovery stalled: restart this worker\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text=f"ready {detail()}".rstrip() + "\n")
        return web.Response(status=503, text="not ready: joining, recovering or rebalancing\n")

    async def metrics_page(request: web.Request) -> web.Response:
        body, content_type = metrics.exposition()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


class WebServer(Service):
    """Runs the HTTP server for as long as the worker runs."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ready: Callable[[], bool],
        detail: Callable[[], str] = lambda: "",
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        self._detail = detail
        self._alive = alive
        self.host = host
        self.port = port
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def on_start(self) -> None:
        self._runner = web.AppRunner(
            make_web_app(self._ready, self._detail, self._alive), access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.log.info("processor web server on http://%s:%s", self.host, self.port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
