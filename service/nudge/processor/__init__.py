"""The stream processor: the journey engine run as a Faust application over Kafka (issue 4).

`app.py` builds the Faust app; `handler.py` is the per-record shell around the engine;
`timers.py` holds the durable per-user timers; `web.py` serves health and metrics; `cli.py` is
`nudge processor`. See docs/processor.md.
"""
