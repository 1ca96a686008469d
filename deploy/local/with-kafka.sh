#!/usr/bin/env bash
# Run a command with a Kafka broker available, and stop the broker afterwards if this script
# started it (also when the command fails or is interrupted).
#   - KAFKA_BOOTSTRAP_SERVERS set: that broker is used, nothing is started.
#   - a broker already answers on 127.0.0.1:${NUDGE_KAFKA_PORT:-9092}: it is used and left running.
#   - otherwise: deploy/local/kafka.sh starts one on empty storage, and stops and deletes it when
#     the command ends.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ -n ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then exec "$@"; fi
port=${NUDGE_KAFKA_PORT:-9092}
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port
if "$here/kafka.sh" status; then exec "$@"; fi
export NUDGE_KAFKA_EPHEMERAL=${NUDGE_KAFKA_EPHEMERAL:-1}  # a broker we start holds only this run
trap '"$here/kafka.sh" stop' EXIT
trap 'exit 130' INT TERM
"$here/kafka.sh" start
set +e
"$@"
status=$?
set -e
exit $status
