"""Topic and consumer-group names (SPEC §1): the SPEC's names by default, and every one of them
under `NUDGE_TOPIC_PREFIX`, so that deployments and test runs share a cluster untouched."""

from __future__ import annotations

from nudge.admin import public_topics
from nudge.sender.pool import RecordingMailer
from nudge.sender.service import SenderService
from nudge.settings import Settings
from nudge.topics import Topics


def test_the_default_names_are_the_specs() -> None:
    """nudge.events, nudge.send-commands, nudge.deliveries, and `<topic>-dlt` for each."""
    assert public_topics(Topics()) == [
        "nudge.events",
        "nudge.send-commands",
        "nudge.deliveries",
        "nudge.events-dlt",
        "nudge.send-commands-dlt",
        "nudge.deliveries-dlt",
    ]


def test_every_topic_and_consumer_group_takes_the_prefix() -> None:
    """With NUDGE_TOPIC_PREFIX=acme-staging. no name a process uses starts with `nudge.`: the
    public topics, the internal ones (ticks, retries, ledger, policies), the processor's app id
    (its consumer group and the prefix of its changelogs) and the sender's group."""
    settings = Settings.from_env({"NUDGE_TOPIC_PREFIX": "acme-staging."})
    topics = Topics(settings.topic_prefix)
    sender = SenderService(settings, mailer=RecordingMailer())
    names = [
        *public_topics(topics),
        topics.internal("ticks"),
        topics.processor_app_id,
        topics.sender_group,
        *sender.source_topics,
        *sender.state_topics.values(),
    ]
    assert topics.events == "acme-staging.events"
    assert all(name.startswith("acme-staging.") for name in names), names
