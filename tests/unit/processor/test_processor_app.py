"""Which Faust paths a worker takes: its own batch paths only on the release they were read in."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from nudge.processor.app import Processor, ProcessorOptions, create_processor
from nudge.processor.cli import load_engine
from nudge.processor.fastpath import FAST_PATHS_FAUST_VERSION, DirectTableStore, FastApp
from nudge.processor.kafka import TableStore
from nudge.settings import Settings


def _build(tmp_path: Path) -> Processor:
    settings = Settings(token_secret=b"x" * 32, state_dir=tmp_path, topic_prefix="t.")
    engine, codec = load_engine(settings)
    return create_processor(settings, engine=engine, codec=codec, options=ProcessorOptions())


def test_the_installed_faust_is_the_release_the_fast_paths_were_written_for() -> None:
    assert faust.__version__ == FAST_PATHS_FAUST_VERSION


def test_a_worker_on_that_release_takes_the_batch_paths(tmp_path: Path) -> None:
    processor = _build(tmp_path)
    assert isinstance(processor.app, FastApp)
    assert isinstance(processor.handler.store, DirectTableStore)


def test_another_faust_release_runs_fausts_own_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    processor = _build(tmp_path)
    assert not isinstance(processor.app, FastApp)
    assert isinstance(processor.handler.store, TableStore)
