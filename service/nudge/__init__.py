"""Nudge: a triggered-messaging engine on Kafka, Faust and SMTP."""

__version__ = "0.1.0"
