"""The processor's HTTP server: liveness unless a recovery stalled, readiness only when ready,
Prometheus metrics."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from nudge.processor.web import make_web_app


async def test_readyz_follows_the_ready_callback_and_lists_partitions() -> None:
    """/readyz is 503 until ready, then 200 with the detail; /livez is 200 throughout."""
    state = {"ready": False}
    app = make_web_app(lambda: state["ready"], lambda: "partitions: 0,2")
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/livez")).status == 200
        assert (await client.get("/readyz")).status == 503
        state["ready"] = True
        response = await client.get("/readyz")
        assert response.status == 200
        assert (await response.text()).strip() == "ready partitions: 0,2"


async def test_metrics_is_the_prometheus_exposition() -> None:
    """/metrics serves nudge_* families in the text format, not Faust's sensor."""
    async with TestClient(TestServer(make_web_app(lambda: True))) as client:
        response = await client.get("/metrics")
        body = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "nudge_events_consumed_total" in body


async def test_livez_is_503_once_the_worker_is_not_alive() -> None:
    """A stalled table recovery (recovery_watch.py) turns /livez to 503, for a restart."""
    state = {"alive": True}
    app = make_web_app(lambda: False, alive=lambda: state["alive"])
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/livez")).status == 200
        state["alive"] = False
        response = await client.get("/livez")
        assert response.status == 503
        assert "recovery stalled" in await response.text()
