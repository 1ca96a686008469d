"""Unit tests of the link service (nudge.links)."""
