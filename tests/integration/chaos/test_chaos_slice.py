"""The chaos slice inside `make test`: the `small` preset of `python -m chaos.run`.

2,000 records for 400 users through a real processor, sender and SMTP sink on the test broker,
with one SIGKILL of the processor, one of the sender, a burst of 451 replies and ~50 malformed or
hostile records. The same verdict as `make chaos` (chaos/verdict.py) must say PASS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(330)]


def test_small_chaos_run_loses_nothing_and_sends_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Under crashes and 4xx every expected mail arrives once; every bad record is dead-lettered."""
    results = tmp_path / "chaos.json"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    command = [sys.executable, "-m", "chaos.run", "--preset", "small", "--results", str(results)]
    command += ["--workdir", str(tmp_path / "run")]
    with (tmp_path / "chaos.out").open("wb") as out:
        harness = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            code = harness.wait(300)  # the small preset bounds itself at 240 s
        except subprocess.TimeoutExpired:
            harness.terminate()  # SIGTERM: the harness stops everything it started
            harness.wait(60)
            pytest.fail("the chaos slice did not finish in 300 s")
    output = (tmp_path / "chaos.out").read_text(errors="replace")
    assert results.exists(), output[-4000:]
    verdict = json.loads(results.read_text())
    assert code == 0, f"{verdict['verdict']}\n{json.dumps(verdict['samples'], indent=1)}"
    assert verdict["passed"]
    refused = verdict["hostile_refused_unsafe_header"]  # CR/LF bound for a Subject
    assert verdict["received_unique"] + refused == verdict["expected_mails"] > 0
    assert verdict["malformed_dead_lettered"] == verdict["malformed_sent"] > 0
    kinds = sorted(f["kind"] for f in verdict["faults"].values())
    assert kinds[:3] == ["kill_processor", "kill_sender", "smtp_flaky"]
