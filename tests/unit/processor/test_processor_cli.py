"""`nudge processor`'s numeric flags: a value that cannot mean anything is refused, by name."""

from __future__ import annotations

import argparse

import pytest

from nudge.processor.cli import add_arguments


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nudge processor", exit_on_error=False)
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_defaults_and_good_values_parse() -> None:
    args = parse("--tick-interval", "0.5", "--batch-size", "100", "--recovery-stall-limit", "0")
    assert (args.tick_interval, args.batch_size, args.recovery_stall_limit) == (0.5, 100, 0.0)
    assert parse().session_timeout > 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--tick-interval", "0", "more than 0"),
        ("--tick-interval", "nan", "more than 0"),
        ("--session-timeout", "-3", "more than 0"),
        ("--batch-size", "0", "more than 0"),
        ("--batch-size", "1.5", "not a whole number"),
        ("--recovery-stall-limit", "-1", "0 or more"),
        ("--recovery-stall-limit", "inf", "0 or more"),
    ],
)
def test_a_value_that_cannot_mean_anything_is_refused_naming_the_flag(
    flag: str, value: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentError, match=message) as refused:
        parse(flag, value)
    assert flag in str(refused.value)
