"""Fixtures of the processor's unit tests (the fakes live in processor_fakes.py)."""

from __future__ import annotations

import pytest
from processor_fakes import CartEngine, Rig, make_handler

from nudge.processor.testing import FakeClock, MemoryStore, RecordingSink
from nudge.processor.timers import DueIndex, TickPlanner


@pytest.fixture
def rig() -> Rig:
    engine = CartEngine()
    store = MemoryStore()
    sink = RecordingSink(store=store)
    clock = FakeClock()
    index = DueIndex()
    planner = TickPlanner(resend_after=5)
    handler = make_handler(engine, store, sink, clock, index, planner)
    return Rig(
        handler=handler,
        engine=engine,
        store=store,
        sink=sink,
        clock=clock,
        index=index,
        planner=planner,
    )
