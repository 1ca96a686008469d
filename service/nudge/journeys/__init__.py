"""The journey engine: journeys declared in YAML, decided by a pure engine (no I/O, no clock).

    config = load_journeys(settings.journeys_path)
    engine = Engine(config, delay_scale=settings.delay_scale)
    outcome = engine.on_event(state_or_None, event, now)

The same engine runs in the stream processor and in `nudge simulate`; see docs/journeys.md and
docs/dev/contracts.md.
"""

from __future__ import annotations

import nudge.journeys.compiled  # noqa: F401 (first: refuses compiled modules older than their source)
from nudge.journeys.config import BUILTIN_TEMPLATES, Journey, JourneysConfig
from nudge.journeys.engine import Engine
from nudge.journeys.loader import load_journeys, parse_journeys
from nudge.journeys.outcome import REASONS, Decision, Outcome
from nudge.journeys.state import Run, Touch, UserState
from nudge.journeys.statecodec import StateDecodeError, decode_state, encode_state
from nudge.journeys.yamlsource import JourneysFileError

__all__ = [
    "BUILTIN_TEMPLATES",
    "REASONS",
    "Decision",
    "Engine",
    "Journey",
    "JourneysConfig",
    "JourneysFileError",
    "Outcome",
    "Run",
    "StateDecodeError",
    "Touch",
    "UserState",
    "decode_state",
    "encode_state",
    "load_journeys",
    "parse_journeys",
]
