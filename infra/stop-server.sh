#!/usr/bin/env bash
# Stop a server that a start.sh launched as its own process group: TERM, up to 15 s, then KILL.
#   infra/stop-server.sh NAME PID_FILE
set -euo pipefail
NAME="$1"
PID_FILE="$2"

if [[ ! -f "$PID_FILE" ]]; then
  echo "no $NAME pid file at $PID_FILE; nothing to stop"
  exit 0
fi
PID="$(cat "$PID_FILE")"
if kill -0 "$PID" 2>/dev/null; then
  kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID"
  for _ in $(seq 30); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$PID" 2>/dev/null; then
    kill -KILL -- "-$PID" 2>/dev/null || kill -KILL "$PID"
  fi
  echo "$NAME stopped (pid $PID)"
else
  echo "$NAME (pid $PID) was not running"
fi
rm -f "$PID_FILE"
