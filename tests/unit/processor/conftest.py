"""Fixtures of the processor's unit tests (the fakes live in processor_fakes.py)."""

from __future__ import annotations

import pytest
from processor_fakes import Rig, new_rig


@pytest.fixture
def rig() -> Rig:
    return new_rig()
