#!/usr/bin/env bash
# One node of the local example, for main.tf's provisioners:
#   node.sh write-files                        write $GOJINN_NODE_FILES ({path: {content, permissions}})
#   node.sh start-nats ROOT BINARY MONITOR_URL start the node's nats-server; wait until it answers
#   node.sh wait-jetstream MONITOR_URL...      wait until every server reports JetStream healthy
#   node.sh start-gojinn ROOT BINARY URL       start the node's gojinn; wait until it is ready
#   node.sh stop PIDFILE NAME                  SIGTERM the process, wait for it to end
# Processes run in the background in their own session, logs in ROOT/var/log, pids in ROOT/run.
# A process that does not come up in time is stopped again, and its log's tail printed.
set -euo pipefail

# Polls URL until it answers 2xx, for at most SECONDS.
wait_for() {
  local url=$1 seconds=$2 deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    if ((SECONDS >= deadline)); then
      echo "node.sh: $url did not answer within ${seconds}s" >&2
      return 1
    fi
    sleep 0.2
  done
}

# Starts a program in the background, detached from terraform's output, and waits for URL.
start() {
  local name=$1 root=$2 url=$3 seconds=$4
  shift 4
  mkdir -p "$root/run" "$root/var/log"
  local log="$root/var/log/$name.log" pidfile="$root/run/$name.pid"
  setsid "$@" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  if ! wait_for "$url" "$seconds"; then
    echo "node.sh: $name in $root is not up; the end of $log:" >&2
    tail -n 30 "$log" >&2 || true
    stop "$pidfile" "$name"
    exit 1
  fi
  echo "$name is up at $url (pid $(cat "$pidfile"))"
}

stop() {
  local pidfile=$1 name=$2 pid deadline
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -TERM "$pid" 2>/dev/null; then
    deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        echo "node.sh: $name (pid $pid) did not stop within 60s after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    echo "$name (pid $pid) stopped"
  fi
  rm -f "$pidfile"
}

command=${1:?usage: node.sh write-files|start-nats|wait-jetstream|start-gojinn|stop ...}
shift
case "$command" in
  write-files)
    python3 -c '
import json, os
for path, file in json.loads(os.environ["GOJINN_NODE_FILES"]).items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(file["permissions"], 8))
    with os.fdopen(descriptor, "w") as out:
        out.write(file["content"])
    os.chmod(path, int(file["permissions"], 8))
'
    ;;
  start-nats)
    root=$1 binary=$2 monitor=$3
    start nats-server "$root" "$monitor/varz" 30 "$binary" --config "$root/etc/nats/nats-server.conf"
    ;;
  wait-jetstream)
    for monitor in "$@"; do
      wait_for "$monitor/healthz" 60
    done
    echo "JetStream is healthy on $# servers"
    ;;
  start-gojinn)
    root=$1 binary=$2 url=$3
    [ -x "$binary" ] || {
      echo "node.sh: no gojinn binary at $binary: build it with cargo build --release, or set gojinn_binary" >&2
      exit 1
    }
    start gojinn "$root" "$url/_gojinn/ready" 120 "$binary" serve --config "$root/etc/gojinn/gojinn.yaml"
    ;;
  stop)
    stop "$1" "$2"
    ;;
  *)
    echo "node.sh: unknown command $command" >&2
    exit 2
    ;;
esac
