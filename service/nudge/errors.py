"""Every error Nudge raises on purpose, in one hierarchy.

    NudgeError
    ├── ConfigError            settings or a journeys file are wrong; fix the file and restart
    ├── PermanentError         this input can never succeed: dead-letter it, keep going
    │   ├── InvalidEvent       not a valid behaviour event (SPEC §2): bad JSON, missing field, ...
    │   ├── InvalidCommand     a send command that cannot be decoded or rendered
    │   └── TemplateError      a template is broken or lacks a variable
    └── TransientError         may succeed later: retry with backoff

Whether to retry is decided by the type, never by parsing a message. Every message says what was
wrong, where (field, file, line) and, where it can, how to fix it.
"""

from __future__ import annotations


class NudgeError(Exception):
    """Base class of every error Nudge raises on purpose."""


class ConfigError(NudgeError):
    """Settings or a journeys file are invalid; the process cannot start until they are fixed."""


class PermanentError(NudgeError):
    """An input that will never succeed; it goes to a dead-letter topic with `reason`."""

    reason: str = "invalid"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidEvent(PermanentError):
    """A record on the events topic that is not a valid behaviour event."""

    reason = "invalid_event"


class InvalidCommand(PermanentError):
    """A record on the send-commands topic that cannot be decoded."""

    reason = "invalid_command"


class TemplateError(PermanentError):
    """A template that does not exist, does not compile, or needs a variable the command lacks."""

    reason = "template_error"


class TransientError(NudgeError):
    """A failure that may pass: a 4xx SMTP reply, a dropped connection, a broker hiccup."""
