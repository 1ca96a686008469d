"""`nudge simulate`, `nudge generate-events` and `nudge validate` as a user runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from nudge.journeys import simulate, synth, validate
from nudge.settings import Settings

SETTINGS = Settings(token_secret=b"x" * 32)


def _run(module: object, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return int(module.main(parser.parse_args(argv), SETTINGS))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "events.jsonl"
    assert _run(synth, ["--users", "150", "--days", "40", "--seed", "7", "--out", str(path)]) == 0
    return path


def _simulate(log: Path, out_dir: Path, *extra: str) -> tuple[bytes, bytes, dict[str, object]]:
    out, decisions, report = out_dir / "c.jsonl", out_dir / "d.jsonl", out_dir / "r.json"
    argv = [
        "--events",
        str(log),
        "--until",
        "+30d",
        "--out",
        str(out),
        "--decisions",
        str(decisions),
        "--report",
        str(report),
        *extra,
    ]
    assert _run(simulate, argv) == 0
    return out.read_bytes(), decisions.read_bytes(), orjson.loads(report.read_bytes())


def test_the_generator_is_deterministic_by_seed_and_sorted_by_time(
    log: Path, tmp_path: Path
) -> None:
    """Same seed, same bytes; every line is a valid event; times never go backwards."""
    again = tmp_path / "again.jsonl"
    _run(synth, ["--users", "150", "--days", "40", "--seed", "7", "--out", str(again)])
    assert again.read_bytes() == log.read_bytes()
    other = tmp_path / "other.jsonl"
    _run(synth, ["--users", "150", "--days", "40", "--seed", "8", "--out", str(other)])
    assert other.read_bytes() != log.read_bytes()
    from nudge.codec import decode_event

    events = [decode_event(line) for line in log.read_bytes().splitlines()]
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    kinds = {e.type for e in events}
    assert {"product.viewed", "cart.item_added", "order.completed", "user.signed_up"} <= kinds


def test_simulating_twice_gives_byte_identical_output(log: Path, tmp_path: Path) -> None:
    """Commands, decisions and report are the same bytes on every run."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _simulate(log, tmp_path / "a")
    second = _simulate(log, tmp_path / "b")
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert first[2] == second[2]
    assert first[0].count(b"\n") > 50


def test_commands_are_in_virtual_time_order_and_say_so(log: Path, tmp_path: Path) -> None:
    """created_at is the virtual send time, and the command log is in time order."""
    commands, _, _ = _simulate(log, tmp_path)
    from datetime import datetime

    times = [
        datetime.fromisoformat(orjson.loads(line)["created_at"]) for line in commands.splitlines()
    ]
    assert times == sorted(times)


def test_the_report_counts_sent_and_not_sent_by_reason(log: Path, tmp_path: Path) -> None:
    """Per journey and step, sent plus not-sent reasons add up to the decisions written."""
    commands, decisions, report = _simulate(log, tmp_path)
    journeys = report["journeys"]
    assert isinstance(journeys, dict)
    sent = sum(j["sent"] for j in journeys.values())
    assert sent == commands.count(b"\n")
    reasons = {reason for j in journeys.values() for reason in j["not_sent"]}
    assert reasons & {"no_consent", "exited"}
    rows = [orjson.loads(line) for line in decisions.splitlines()]
    skipped = sum(1 for r in rows if r["outcome"] == "skipped")
    assert skipped == sum(sum(j["not_sent"].values()) for j in journeys.values())


def test_invalid_lines_are_reported_with_their_number_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad line does not stop the run; its line number and reason are in the report and on
    stderr."""
    good = orjson.dumps(
        {
            "event_id": "e1",
            "type": "order.completed",
            "user_id": "u1",
            "occurred_at": "2026-11-22T10:00:00+09:00",
            "properties": {"order_id": "o", "total": 1, "currency": "JPY", "items": []},
            "user": {"email": "a@example.jp"},
        }
    )
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([b"{not json", good, b'{"event_id": "e2"}', b""]))
    _, _, report = _simulate(path, tmp_path)
    events = report["events"]
    assert isinstance(events, dict)
    assert [(i["line"], i["reason"]) for i in events["invalid_lines"]] == [
        (1, "malformed_json"),
        (3, "missing_field"),
    ]
    assert events["valid"] == 1
    assert f"{path}:1: malformed_json" in capsys.readouterr().err


def test_an_unsorted_log_is_read_in_time_order(tmp_path: Path) -> None:
    """Lines out of time order give the same commands as the sorted log."""

    def event(i: int, minute: int) -> bytes:
        return orjson.dumps(
            {
                "event_id": f"e{i}",
                "type": "cart.item_added",
                "user_id": f"u{i}",
                "occurred_at": f"2026-11-22T10:{minute:02d}:00+09:00",
                "properties": {"product_id": "p", "name": "n", "price": 1, "quantity": 1},
                "user": {"email": f"u{i}@example.jp", "marketing_consent": True},
            }
        )

    lines = [event(1, 10), event(2, 5), event(3, 30)]
    unsorted, in_order = tmp_path / "u.jsonl", tmp_path / "s.jsonl"
    unsorted.write_bytes(b"\n".join(lines))
    in_order.write_bytes(b"\n".join(sorted(lines, key=lambda b: orjson.loads(b)["occurred_at"])))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _simulate(unsorted, tmp_path / "a")[0] == _simulate(in_order, tmp_path / "b")[0]


def test_the_journeys_file_given_with_journeys_is_the_one_run(log: Path, tmp_path: Path) -> None:
    """`--journeys FILE` replaces the shipped journeys: a file with order_confirmation alone
    gives order confirmations and nothing else."""
    only = tmp_path / "only.yaml"
    only.write_text(
        "version: 1\n"
        "journeys:\n"
        "  order_confirmation:\n"
        "    kind: transactional\n"
        "    trigger: {event: order.completed}\n"
        "    steps: [{name: confirmation, template: order_confirmation}]\n"
    )
    commands, _, report = _simulate(log, tmp_path, "--journeys", str(only))
    journeys = {orjson.loads(line)["journey"] for line in commands.splitlines()}
    assert journeys == {"order_confirmation"}
    assert set(report["journeys"]) == {"order_confirmation"}  # type: ignore[arg-type]


def test_validate_accepts_the_shipped_file_and_rejects_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 for the shipped file; exit 2 (bad input) with file:line: field for a typo."""
    assert _run(validate, ["-q"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(SETTINGS.journeys_path.read_text().replace("order.shipped}", "order.shiped}"))
    assert _run(validate, [str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err
    assert "did you mean 'order.shipped'?" in err


def test_the_interpreted_engine_gives_the_same_bytes_as_the_compiled_one(
    log: Path, tmp_path: Path
) -> None:
    """`make install` compiles the engine with mypyc; the same source without the extensions
    (NUDGE_COMPILE=0, no C compiler) must decide exactly the same."""
    import shutil
    import subprocess
    import sys
    from importlib.machinery import EXTENSION_SUFFIXES

    import nudge

    package = Path(nudge.__file__).resolve().parent
    compiled = any(package.rglob(f"*{EXTENSION_SUFFIXES[0]}"))
    if not compiled:
        pytest.skip("the engine is not compiled here (NUDGE_COMPILE=0): nothing to compare")
    source = tmp_path / "source"
    shutil.copytree(package, source / "nudge", ignore=shutil.ignore_patterns("*.so", "__pycache__"))

    def run(pythonpath: Path, out: Path) -> tuple[bytes, bytes, bytes]:
        out.mkdir()
        files = [out / "c.jsonl", out / "d.jsonl", out / "r.json"]
        script = (
            "import sys, nudge.journeys.engine as e; "
            "print(e.__file__, file=sys.stderr); "
            "from nudge.cli import main; sys.exit(main())"
        )
        argv = ["simulate", "--events", str(log), "--until", "+30d", "--out", str(files[0])]
        argv += ["--decisions", str(files[1]), "--report", str(files[2])]
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", script, *argv],
            env={"PYTHONPATH": str(pythonpath), "NUDGE_TOKEN_SECRET": "x" * 32, "PATH": ""},
            cwd=tmp_path,
            capture_output=True,
            check=True,
        )
        engine_file = done.stderr.splitlines()[0].decode()
        assert engine_file.endswith(".py") == (pythonpath == source), engine_file
        return files[0].read_bytes(), files[1].read_bytes(), files[2].read_bytes()

    assert run(source, tmp_path / "interpreted") == run(package.parent, tmp_path / "compiled")
