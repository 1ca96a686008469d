"""The `nudge` command line as a user meets it: bad input or an unreachable dependency gives one
line `nudge COMMAND: what and where; hint`, exit code 2 for what the user gave and 1 for what
failed while running, and never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import nudge
from nudge.catalog import TEMPLATE_ROOT
from nudge.cli import main

SERVICE = Path(nudge.__file__).resolve().parent.parent
EVENT = (
    b'{"event_id":"e-1","type":"user.logged_in","user_id":"u-1",'
    b'"occurred_at":"2026-11-22T10:15:00+09:00"}'
)
NO_KAFKA = "127.0.0.1:1"  # nothing listens on port 1: refused at once


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the files the table below names, as the current directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NUDGE_TOKEN_SECRET", "x" * 32)
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "events.jsonl").write_bytes(EVENT + b"\n")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "string.json").write_text('"just a string"')
    (tmp_path / "empty.json").write_text("{}")
    (tmp_path / "text.json").write_text("this is not JSON")
    return tmp_path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`nudge ARGV` in this process: exit code, stdout, stderr (an exception fails the test)."""
    try:
        code = main(argv)
    except SystemExit as done:  # argparse refusing an argument, or --help
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


BAD_INPUT = [
    # (arguments, exit code, what stderr says)
    ([], 2, "usage: nudge COMMAND"),
    (["nope"], 2, "nudge: unknown command 'nope'"),
    (["produce", "missing.jsonl"], 2, "nudge produce: cannot read missing.jsonl: No such file"),
    (["produce", "adir"], 2, "nudge produce: cannot read adir: Is a directory"),
    (["produce", "afile/x.jsonl"], 2, "nudge produce: cannot read afile/x.jsonl: a folder in"),
    (["produce", "--rate", "-3", "events.jsonl"], 2, "argument --rate: must be a finite number"),
    (["produce", "--topic", "", "events.jsonl"], 2, "argument --topic: must not be empty"),
    (["generate-events", "--start", "2026-13-01"], 2, "--start: '2026-13-01' is not a day"),
    (["generate-events", "--start", "tomorrow"], 2, "--start: 'tomorrow' is not a day"),
    (["generate-events", "--users", "0"], 2, "argument --users: must be a finite number 1"),
    (["generate-events", "--users", "3", "--out", "adir"], 2, "cannot write --out adir: Is a"),
    (
        ["generate-events", "--users", "3", "--out", "afile/x.jsonl"],
        2,
        "nudge generate-events: cannot write --out afile/x.jsonl: afile is a file, not a folder",
    ),
    (["render", "order_confirmaton"], 2, "(did you mean order_confirmation?)"),
    (["render", "order_confirmaton"], 2, f"no template 'order_confirmaton' in {TEMPLATE_ROOT}"),
    (["render", "nothing_like_it"], 2, "; the templates are anniversary, birthday,"),
    (["render", "welcome", "--locale", "fr"], 2, "the shipped locales are ja, en"),
    (
        ["render", "order_confirmation", "--vars", "list.json"],
        2,
        "nudge render: --vars list.json must hold a JSON object, got a list",
    ),
    (["render", "order_confirmation", "--vars", "string.json"], 2, "object, got a string"),
    (["render", "welcome", "--vars", "text.json"], 2, "--vars text.json is not JSON (line 1, "),
    (
        ["render", "order_confirmation", "--vars", "empty.json"],
        2,
        "variable 'order_id' is missing from --vars empty.json",
    ),
    (["render", "welcome", "--to", "notanemail", "--eml", "t.eml"], 2, "not an email address"),
    (["render", "welcome", "--eml", "adir"], 2, "nudge render: cannot write --eml adir: Is a"),
    (["smtp-sink", "--port", "99999"], 2, "argument --port: a port is 0 to 65535"),
    (["smtp-sink", "--fail-ratio", "2"], 2, "argument --fail-ratio: a share is from 0 to 1"),
    (
        ["smtp-sink", "--maildir", "afile"],
        2,
        "nudge smtp-sink: cannot create --maildir afile: afile is a file, not a folder",
    ),
    (["web", "--port", "99999"], 2, "argument --port: a port is 1 to 65535"),
    (["web", "--per-client-rate", "-1"], 2, "argument --per-client-rate: must be a finite"),
    (["web", "--max-in-flight", "0"], 2, "argument --max-in-flight: must be a finite number 1"),
    (["sender", "--port", "70000"], 2, "argument --port: a port is 0 to 65535 (0: none)"),
    (["validate", "missing.yaml"], 2, "missing.yaml: cannot read: No such file or directory"),
    (["validate", "missing.yaml"], 2, "hint: check the PATH argument"),
    (
        ["simulate", "--events", "events.jsonl", "--journeys", "missing.yaml"],
        2,
        "hint: check --journeys",
    ),
    (["simulate", "--events", "missing.jsonl"], 2, "cannot read --events missing.jsonl: No such"),
    (
        ["simulate", "--events", "events.jsonl", "--report", "afile/r.json"],
        2,
        "cannot write --report afile/r.json: afile is a file, not a folder",
    ),
    (
        ["simulate", "--events", "events.jsonl", "--until", "tomorrow"],
        2,
        "nudge simulate: --until 'tomorrow' is neither a time",
    ),
    (["simulate", "--events", "events.jsonl", "--until", "+30x"], 2, "--until '+30x': '30x'"),
]


@pytest.mark.parametrize(
    ("argv", "code", "message"), BAD_INPUT, ids=[" ".join(argv) or "-" for argv, _, _ in BAD_INPUT]
)
def test_bad_input_is_one_clear_line_and_exit_code_2(
    argv: list[str], code: int, message: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad argument or file is refused by name, with no traceback."""
    got, _, err = run(argv, capsys)
    assert (got, message in err) == (code, True), err
    assert "Traceback" not in err


def test_the_hint_names_nudge_journeys_when_the_path_came_from_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUDGE_JOURNEYS", "missing.yaml")
    code, _, err = run(["validate"], capsys)
    assert code == 2
    assert "missing.yaml: cannot read" in err
    assert ":0:" not in err
    assert "hint: set NUDGE_JOURNEYS to an existing file" in err


def test_the_sender_needs_a_journeys_file_it_can_read(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender reads its quiet hours and graces from NUDGE_JOURNEYS, as the processor does: a
    file it cannot read stops it at start with exit code 2, before any broker is asked."""
    monkeypatch.setenv("NUDGE_JOURNEYS", "missing.yaml")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", NO_KAFKA)
    code, _, err = run(["sender", "--port", "0"], capsys)
    assert code == 2
    assert "nudge sender: cannot start: missing.yaml: cannot read" in err
    assert "hint: set NUDGE_JOURNEYS to an existing file" in err


def test_validate_names_file_line_and_field_of_a_bad_coupon_validity(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped file with winback's coupon valid for 0 days: exit 2, the line and the field."""
    shipped = (SERVICE / "nudge" / "journeys.yaml").read_text(encoding="utf-8")
    bad = shipped.replace(
        "code_prefix: COMEBACK, valid_days: 30", "code_prefix: COMEBACK, valid_days: 0"
    )
    assert bad != shipped
    (workdir / "bad.yaml").write_text(bad, encoding="utf-8")
    line = bad[: bad.index("valid_days: 0")].count("\n") + 1
    code, _, err = run(["validate", "bad.yaml"], capsys)
    assert code == 2
    assert (
        f"bad.yaml:{line}: journeys.winback.steps[0].params.valid_days: must be at least 1 (got 0)"
        in err
    )
    assert "bad.yaml: 1 problem" in err


def test_an_until_before_the_last_event_is_warned_about_not_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--events", "events.jsonl", "--until", "2020-01-01T00:00:00Z"]
    code, _, err = run(argv, capsys)
    assert code == 0
    assert "warning: --until 2020-01-01T00:00:00Z is before the last event" in err


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, default in [
        (["generate-events", "--help"], "(default: 2026-11-01)"),
        (["smtp-sink", "--help"], "(default: .cache/maildir)"),
        (["web", "--help"], "(default: 50.0)"),
        (["produce", "--help"], "(default: 0.0)"),
    ]:
        code, out, _ = run(argv, capsys)
        assert (code, default in " ".join(out.split())) == (0, True), out


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"], capsys)[:2] == (0, f"nudge {metadata.version('nudge')}\n")
    assert run(["help"], capsys)[:2] == run(["--help"], capsys)[:2]
    code, out, _ = run(["help", "render"], capsys)
    assert (code, out.startswith("usage: nudge render")) == (0, True)


def test_python_dash_m_nudge_is_the_nudge_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nudge", "--version"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (0, f"nudge {metadata.version('nudge')}\n")


def test_the_processor_takes_host_and_still_its_old_name_web_host() -> None:
    import argparse

    from nudge.processor.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--host", "0.0.0.0"]).web_host == "0.0.0.0"  # noqa: S104
    assert parser.parse_args(["--web-host", "0.0.0.0"]).web_host == "0.0.0.0"  # noqa: S104


def test_produce_reports_each_invalid_line_and_skips_it(capsys: pytest.CaptureFixture[str]) -> None:
    from nudge.produce import CheckedLines

    lines = [EVENT + b"\n", b"{not json\n", b"\n", b'{"event_id":"e-2"}\r\n']
    checked = CheckedLines("bad.jsonl", send_invalid=False)
    assert list(checked.lines(lines)) == [EVENT]
    assert checked.invalid == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("bad.jsonl:2: malformed_json: ")
    assert err[0].endswith("(skipped)")
    assert err[1].startswith("bad.jsonl:4: missing_field: ")


def test_produce_sends_invalid_lines_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    from nudge.produce import CheckedLines

    checked = CheckedLines("bad.jsonl", send_invalid=True)
    assert list(checked.lines([EVENT, b"{not json"])) == [EVENT, b"{not json"]
    assert checked.invalid == 1
    assert "bad.jsonl:2: malformed_json: " in capsys.readouterr().err


def nudge_process(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`nudge ARGV` as its own process (for commands that configure logging or need isolation)."""
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-c", "import sys; from nudge.cli import main; sys.exit(main())", *argv],
        env={"PYTHONPATH": str(SERVICE), "NUDGE_TOKEN_SECRET": "x" * 32, "PATH": "", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["produce", "processor"])
def test_an_unreachable_broker_is_one_line_with_the_hint_and_exit_code_1(
    command: str, tmp_path: Path
) -> None:
    (tmp_path / "events.jsonl").write_bytes(EVENT + b"\n")
    argv = [command, "events.jsonl"] if command == "produce" else [command]
    done = nudge_process(argv, tmp_path, KAFKA_BOOTSTRAP_SERVERS=NO_KAFKA, NUDGE_LOG_FORMAT="json")
    assert done.returncode == 1, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("nudge ")]
    assert ours == [
        f"nudge {command}: cannot reach Kafka at {NO_KAFKA}; start a broker (make kafka) or set "
        "KAFKA_BOOTSTRAP_SERVERS"
    ]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["processor", "sender"])
def test_a_service_that_cannot_reach_the_broker_logs_it_and_exits_with_1(
    command: str, tmp_path: Path
) -> None:
    """Both services report it through `nudge.logs.kafka_unreachable`: a
    `<command>.kafka_unreachable` ERROR log line, and the one line on stderr (the sender's says
    it stopped, with the error: its run ends there, at start or after days)."""
    done = nudge_process(
        [command],
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=NO_KAFKA,
        NUDGE_LOG_FORMAT="json",
        NUDGE_SENDER_PORT="0",
    )
    assert done.returncode == 1, done.stderr
    hint = "; start a broker (make kafka) or set KAFKA_BOOTSTRAP_SERVERS"
    [ours] = [line for line in done.stderr.splitlines() if line.startswith("nudge ")]
    if command == "processor":
        assert ours == f"nudge processor: cannot reach Kafka at {NO_KAFKA}{hint}"
    else:
        assert ours.startswith(f"nudge sender: stopped: Kafka at {NO_KAFKA}: KafkaConnectionError")
        assert ours.endswith(hint)
    logged = [json.loads(line) for line in done.stderr.splitlines() if "kafka_unreachable" in line]
    assert [(entry["event"], entry["level"], entry["bootstrap"]) for entry in logged] == [
        (f"{command}.kafka_unreachable", "error", NO_KAFKA)
    ]
    assert "Traceback" not in done.stderr


def test_a_stale_compiled_engine_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    """After an edit without `make install`, the package refuses the old compiled module; the
    command line says so in one line instead of the 28 of the import machinery."""
    package = SERVICE / "nudge"
    if not any((package / "journeys").glob(f"*{EXTENSION_SUFFIXES[0]}")):
        pytest.skip("the engine is not compiled here (NUDGE_COMPILE=0): nothing can be stale")
    copy = tmp_path / "service" / "nudge"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    edited = (copy / "journeys" / "engine.py").resolve()
    later = time.time() + 60
    os.utime(edited, (later, later))
    done = nudge_process(["validate", "-q"], tmp_path, PYTHONPATH=str(copy.parent))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"nudge validate: {edited} changed after it was compiled, and Python would run the old "
        "compiled module: run `make install` to compile it again (NUDGE_COMPILE=0 make install, "
        "or deleting the .so files next to it, runs the source instead)"
    ]


@pytest.mark.parametrize(
    ("template", "unsubscribe"),
    [("cart_reminder_1", True), ("birthday", True), ("order_confirmation", False)],
)
def test_render_previews_a_template_as_the_journeys_file_sends_it(
    template: str, unsubscribe: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --kind, a marketing template previews with its unsubscribe link (as its step in
    the journeys file sends it) and a transactional one without."""
    code, out, _ = run(["render", template, "--locale", "en"], capsys)
    assert code == 0
    assert ("/unsubscribe?token=" in out) is unsubscribe
    code, out, _ = run(["render", template, "--locale", "en", "--kind", "transactional"], capsys)
    assert code == 0
    assert "/unsubscribe?token=" not in out
