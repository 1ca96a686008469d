#!/usr/bin/env bash
# `make run`: a real local stack and a demo.
#   Kafka (started here unless KAFKA_BOOTSTRAP_SERVERS is set), the SMTP sink (unless SMTP_URL is
#   set), `nudge processor`, `nudge sender`, `nudge web`; then the demo events, then a live view of
#   the mails and dead letters as they arrive. Ctrl-C stops everything this script started.
# NUDGE_DEMO_SECONDS=N ends the demo by itself after N seconds (used by CI-style smoke runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=$root/.venv/bin
run_id=$(date +%Y%m%d-%H%M%S)
demo=$root/.cache/demo/$run_id
mkdir -p "$demo"

# A fresh topic prefix and state per run, so the demo shows the same mails every time (a reused
# prefix would, rightly, ignore the repeated event ids).
export NUDGE_TOPIC_PREFIX=${NUDGE_TOPIC_PREFIX:-demo-$run_id.}
export NUDGE_STATE_DIR=$demo/state
# Scale relative waits: the 60-minute cart reminder fires after 3.6 s.
export NUDGE_DELAY_SCALE=${NUDGE_DELAY_SCALE:-0.001}
export NUDGE_LOG_FORMAT=${NUDGE_LOG_FORMAT:-console}
export NUDGE_TOKEN_SECRET=${NUDGE_TOKEN_SECRET:-demo-only-secret-change-me-in-production}
export NUDGE_PUBLIC_URL=${NUDGE_PUBLIC_URL:-http://127.0.0.1:${NUDGE_WEB_PORT:-8080}}
# What Japan's law asks marketing mail to show (docs/sender.md); a real shop sets its own.
export NUDGE_SENDER_ADDRESS=${NUDGE_SENDER_ADDRESS:-"〒100-0001 東京都千代田区千代田1-1 (demo)"}
export NUDGE_SENDER_CONTACT=${NUDGE_SENDER_CONTACT:-support@example.com}

say() { printf '\033[1;36mnudge demo:\033[0m %s\n' "$*"; }

pids=()
started_kafka=0
cleanup() {
  trap - EXIT INT TERM
  say "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.25
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if ((started_kafka)); then deploy/local/kafka.sh stop; fi
  say "stopped everything this demo started. Logs and mails stay in $demo"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${KAFKA_BOOTSTRAP_SERVERS:-} ]]; then
  export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:${NUDGE_KAFKA_PORT:-9092}
  if ! deploy/local/kafka.sh status; then
    # The demo's topics are of no use after it ends (each run has its own prefix): a fresh broker
    # starts in seconds and is deleted on Ctrl-C.
    NUDGE_KAFKA_EPHEMERAL=${NUDGE_KAFKA_EPHEMERAL:-1} deploy/local/kafka.sh start
    started_kafka=1
  else
    say "using the Kafka broker already running on $KAFKA_BOOTSTRAP_SERVERS"
  fi
fi

wait_http() {  # wait_http NAME URL PID
  for _ in $(seq 1 240); do
    if "$bin/python" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$2" 2>/dev/null; then
      return 0
    fi
    kill -0 "$3" 2>/dev/null || { say "$1 exited; last lines of its log:"; tail -20 "$demo/$1.log"; exit 1; }
    sleep 0.5
  done
  say "$1 was not ready after 120 s; see $demo/$1.log"; exit 1
}

maildir=$demo/maildir
if [[ -z ${SMTP_URL:-} ]]; then
  sink_port=${NUDGE_SINK_PORT:-2525}
  export SMTP_URL=smtp://127.0.0.1:$sink_port
  "$bin/nudge" smtp-sink --port "$sink_port" --maildir "$maildir" >"$demo/smtp-sink.log" 2>&1 &
  pids+=($!)
  say "SMTP sink on 127.0.0.1:$sink_port, storing mail in $maildir"
else
  say "delivering to SMTP_URL (mail will not appear in $maildir)"
fi

say "starting processor, sender and link service (logs in $demo/*.log)"
"$bin/nudge" processor >"$demo/processor.log" 2>&1 & pids+=($!); processor=$!
"$bin/nudge" sender >"$demo/sender.log" 2>&1 & pids+=($!); sender=$!
"$bin/nudge" web >"$demo/web.log" 2>&1 & pids+=($!); web=$!
wait_http processor "http://127.0.0.1:${NUDGE_PROCESSOR_PORT:-6066}/readyz" "$processor"
wait_http sender "http://127.0.0.1:${NUDGE_SENDER_PORT:-9465}/readyz" "$sender"
wait_http web "http://127.0.0.1:${NUDGE_WEB_PORT:-8080}/readyz" "$web"
say "all services ready"

"$bin/python" deploy/local/demo_events.py >"$demo/events.jsonl"
"$bin/nudge" produce --send-invalid "$demo/events.jsonl"  # the two broken events too
cat <<MSG

  What to expect, within seconds: order confirmations for Hana (ja, two orders) and Emma (en), a
  welcome mail and a password reset for Taro, and two dead letters for the two broken events.
  A few seconds later (60 min × NUDGE_DELAY_SCALE): first-purchase thank-you mails with a coupon
  for Hana and Emma, a cart reminder for Emma — and none for Hana, whose order closed her cart.
  Metrics: processor :${NUDGE_PROCESSOR_PORT:-6066}/metrics, sender :${NUDGE_SENDER_PORT:-9465}/metrics, links :${NUDGE_WEB_PORT:-8080}/metrics.
  Press Ctrl-C to stop.

MSG
"$bin/python" deploy/local/watch.py "$maildir" --seconds "${NUDGE_DEMO_SECONDS:-1000000000}"
