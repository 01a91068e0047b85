#!/usr/bin/env bash
# Stop the ZenML server started by start.sh (one process group).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
GRAFT_ZENML_HOME="${GRAFT_ZENML_HOME:-${GRAFT_HOME:-$ROOT/.graft}/zenml-server}"
PID_FILE="$GRAFT_ZENML_HOME/server.pid"

if [[ ! -f "$PID_FILE" ]]; then
  echo "no zenml server pid file at $PID_FILE; nothing to stop"
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
  echo "zenml server stopped (pid $PID)"
else
  echo "zenml server (pid $PID) was not running"
fi
rm -f "$PID_FILE"
