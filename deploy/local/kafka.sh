#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback, for `make run`
# and `make test`. The jars come from Maven Central through deploy/local/pom.xml; nothing else is
# downloaded. State lives under .cache/kafka (ignored by git).
#
#   deploy/local/kafka.sh fetch   # download the jars once (progress is shown)
#   deploy/local/kafka.sh start   # fetch if needed, format, start in the background, wait until ready
#   deploy/local/kafka.sh stop    # stop the broker this script started (SIGTERM, then SIGKILL)
#   deploy/local/kafka.sh status  # exit 0 when a broker answers on the port
#
# Environment: NUDGE_KAFKA_PORT (default 9092), NUDGE_KAFKA_HOME (default .cache/kafka),
# NUDGE_KAFKA_EPHEMERAL=1: start from empty storage and delete it on stop. `make test` and
# `make run` use it: every test run creates its own topics, and a broker that keeps them all
# grows to thousands of partitions and starts too slowly to serve the next run.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
home=${NUDGE_KAFKA_HOME:-$root/.cache/kafka}
port=${NUDGE_KAFKA_PORT:-9092}
controller_port=$((port + 1))
libs=$home/libs
data=$home/data-$port
pidfile=$home/broker-$port.pid
logfile=$home/broker-$port.log

say() { printf '\033[1mkafka:\033[0m %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch() {
  if [[ -f $libs/.complete ]]; then return; fi
  command -v mvn >/dev/null || { say "Maven (mvn) is required to fetch the Kafka jars: apt-get install maven"; exit 1; }
  command -v java >/dev/null || { say "Java 17+ is required to run Kafka: apt-get install openjdk-17-jre-headless"; exit 1; }
  say "fetching the Kafka broker jars from Maven Central into $libs (first run only)..."
  rm -rf "$libs"
  mvn -B -ntp -f "$root/deploy/local/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$libs" -DincludeScope=runtime \
    | sed -n 's/^\[INFO\] \(Copying\|BUILD\)/  \1/p' >&2
  touch "$libs/.complete"
  say "$(ls "$libs"/*.jar | wc -l) jars ready"
}

write_config() {
  mkdir -p "$data"
  cat >"$home/server-$port.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
PROPS
  cat >"$home/log4j.properties" <<PROPS
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$logfile
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
PROPS
}

java_run() {
  java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j.configuration="file:$home/log4j.properties" -cp "$libs/*" "$@"
}

start() {
  if port_open "$port"; then say "a broker already answers on 127.0.0.1:$port; using it"; return; fi
  fetch
  if [[ ${NUDGE_KAFKA_EPHEMERAL:-0} == 1 ]]; then rm -rf "$data"; fi
  write_config
  if [[ ${NUDGE_KAFKA_EPHEMERAL:-0} == 1 ]]; then touch "$data/.ephemeral"; fi
  if [[ ! -f $data/meta.properties ]]; then
    say "formatting storage in $data"
    java_run kafka.tools.StorageTool format --ignore-formatted \
      -t "$(java_run kafka.tools.StorageTool random-uuid)" -c "$home/server-$port.properties" >/dev/null
  fi
  say "starting the broker on 127.0.0.1:$port (log: $logfile)"
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
       -Dlog4j.configuration="file:$home/log4j.properties" -cp "$libs/*" \
       kafka.Kafka "$home/server-$port.properties" >>"$logfile" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if port_open "$port"; then say "ready"; return; fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      say "the broker exited during start; last lines of $logfile:"; tail -20 "$logfile" >&2; exit 1
    fi
    sleep 0.5
  done
  say "the broker did not accept connections within 60 s; see $logfile"; exit 1
}

stop() {
  [[ -f $pidfile ]] || { say "no broker started by this script on port $port"; return; }
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping the broker (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { say "no exit after 30 s; killing"; kill -KILL "$pid"; }
  fi
  rm -f "$pidfile"
  if [[ -f $data/.ephemeral ]]; then rm -rf "$data"; fi
}

case ${1:-} in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) port_open "$port" ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
