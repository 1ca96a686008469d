"""`nudge processor`: run one stream-processor worker (a Faust worker) until SIGTERM or Ctrl-C.

Every worker of a deployment uses the same `NUDGE_TOPIC_PREFIX` (the consumer group) and its own
`NUDGE_STATE_DIR` (RocksDB files are locked by one process). SIGTERM stops gracefully: the agent
finishes the record in hand, offsets are committed, the producer is flushed, the group is left.
"""

from __future__ import annotations

import argparse
import asyncio

import faust
import structlog
from aiokafka.errors import KafkaError

from nudge import logs, metrics
from nudge.commandline import USAGE, error, number
from nudge.errors import ConfigError
from nudge.processor.app import ProcessorOptions, create_processor
from nudge.processor.engine_codec import EngineCodec
from nudge.processor.kafka import prepare_topics
from nudge.processor.ports import JourneyEngine
from nudge.processor.web import WebServer
from nudge.settings import Settings

log = structlog.get_logger("nudge.processor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ProcessorOptions()
    parser.add_argument(
        "--tick-interval",
        type=number(float, above=0.0),
        default=defaults.tick_interval,
        help="seconds between checks for due timers (default %(default)s)",
    )
    parser.add_argument(
        "--session-timeout",
        type=number(float, above=0.0),
        default=defaults.session_timeout,
        help="seconds after which a silent worker's partitions move to the others "
        "(default %(default)s; the broker's minimum is usually 6)",
    )
    parser.add_argument(
        "--host",
        "--web-host",  # its first name, which deployments use
        dest="web_host",
        metavar="HOST",
        default=defaults.web_host,
        help="address of /livez, /readyz, /metrics (default %(default)s; 0.0.0.0 in containers)",
    )
    parser.add_argument(
        "--batch-size",
        type=number(int, above=0),
        default=defaults.batch_size,
        help="records handled per acknowledgement round trip (default %(default)s)",
    )
    parser.add_argument(
        "--faust-paths",
        action="store_true",
        help="use Faust's own per-record table writes, producer path, consumer and monitor "
        "(slower; for comparing the two in benchmarks)",
    )
    parser.add_argument(
        "--recovery-stall-limit",
        type=number(float, at_least=0.0),
        default=defaults.recovery_stall_limit,
        help="seconds a table recovery may read nothing while records remain before /livez "
        "answers 503, for a restart (default %(default)s; 0: never)",
    )
    parser.add_argument(
        "--store",
        choices=("rocksdb", "memory"),
        default="rocksdb",
        help="table store: rocksdb (default; survives restarts) or memory (recovers from the "
        "changelog at every start)",
    )


def load_engine(settings: Settings) -> tuple[JourneyEngine, EngineCodec]:
    """The journey engine for the configured journeys file (ConfigError when it is invalid)."""
    from nudge import journeys

    engine: JourneyEngine = journeys.Engine(
        journeys.load_journeys(settings.journeys_path), delay_scale=settings.delay_scale
    )
    return engine, EngineCodec(journeys)


def main(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(fmt=settings.log_format, level=settings.log_level, service="processor")
    metrics.describe_process("processor")
    options = ProcessorOptions(
        tick_interval=args.tick_interval,
        session_timeout=args.session_timeout,
        web_host=args.web_host,
        store=f"{args.store}://",
        batch_size=args.batch_size,
        faust_paths=args.faust_paths,
        recovery_stall_limit=args.recovery_stall_limit,
    )
    try:
        engine, codec = load_engine(settings)
        asyncio.run(prepare_topics(settings))
    except ConfigError as err:
        log.error("cannot start", error=str(err))
        error("processor", f"cannot start: {err}")
        return USAGE
    except KafkaError as err:
        return logs.kafka_unreachable("processor", settings.kafka_bootstrap_servers, err)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    processor = create_processor(settings, engine=engine, codec=codec, options=options)
    metrics.report_readiness("processor", processor.ready)
    web = WebServer(
        host=options.web_host,
        port=settings.processor_web_port,
        ready=processor.ready,
        detail=processor.detail,
        alive=processor.alive,
    )
    log.info(
        "processor starting",
        app_id=processor.topics.processor_app_id,
        partitions=settings.topic_partitions,
        guarantee=settings.processing_guarantee,
        state_dir=str(settings.state_dir),
        port=settings.processor_web_port,
    )
    worker = faust.Worker(
        processor.app,
        web,
        *([processor.watcher] if processor.watcher is not None else []),
        loop=loop,
        loglevel=settings.log_level,
        override_logging=False,
        quiet=True,
    )
    # Faust's terminal spinner writes a cursor escape to stdout even when stdout is a log pipe.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0
        # Faust's own stop lines are INFO of a library (not shown): say it, like the sender.
        log.info("processor stopped", exit_code=code)
        return code
