"""Topic and consumer-group names, all under one prefix (SPEC §1, `NUDGE_TOPIC_PREFIX`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    """The names one deployment uses; two prefixes never share a topic or a group."""

    prefix: str = "nudge."

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def send_commands(self) -> str:
        return f"{self.prefix}send-commands"

    @property
    def deliveries(self) -> str:
        return f"{self.prefix}deliveries"

    @property
    def processor_app_id(self) -> str:
        """Faust app id; Faust names its changelog topics after it, so they share the prefix."""
        return f"{self.prefix}processor"

    @property
    def sender_group(self) -> str:
        return f"{self.prefix}sender"

    def internal(self, name: str) -> str:
        """An implementation-owned topic (ticks, retries, idempotency log) under the prefix."""
        return f"{self.prefix}internal.{name}"

    @staticmethod
    def dead_letter(topic: str) -> str:
        return f"{topic}-dlt"
